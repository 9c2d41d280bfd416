// Package version holds the causality rules of the store: clocks, the versions
// (siblings) a key holds, how replicas merge, and the opaque context clients
// carry in X-Context.
//
// # Model
//
// The scheme is the "dotted version vector" of Riak 2.0 in its per-key form
// (an object-wide causal context plus one dot per sibling, as in ORSWOT):
//
//   - An Actor is one coordinator incarnation: a random 64-bit id minted when
//     a node's data dir is created. A wiped data dir gets a new actor, so a
//     node can never mint the same dot twice.
//   - A Dot (actor, counter) names exactly one write. Only the coordinating
//     node mints dots, and only from its own durable copy of the key, so dots
//     are unique per key.
//   - An Object is a Clock (every dot this copy has seen, live or superseded)
//     and the Siblings still live, each tagged with its dot.
//
// A write with client context C removes the siblings whose dots C covers and
// adds one new sibling; the object clock absorbs C. A delete does the same
// without adding a sibling: an object with a non-empty clock and no siblings
// is a tombstone, and merging it into a replica removes exactly the versions
// the delete saw. Merging two copies keeps a sibling when both have it or
// when the other copy has never seen its dot; so a sibling disappears only
// when some write's context covered it.
//
// # What always holds
//
//   - Clock size is bounded by the number of actors that coordinated writes
//     to the key, never by the number of clients or writes.
//   - Merge is commutative, associative and idempotent; replicas that have
//     exchanged everything hold equal objects regardless of order.
//   - A stale context can only produce a sibling for a version the client
//     truly had not seen; it never drops one (no lost writes) and never keeps
//     one the client had seen (no false siblings).
//
// Values of this package are treated as immutable once built: functions
// return new values and never modify their arguments.
package version
