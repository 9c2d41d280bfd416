// Package ring places keys on members with consistent hashing over a fixed
// number of equal partitions, strategy 3 of the Dynamo paper.
//
// The hash space is cut into P equal ranges (partitions) once, for the life of
// the cluster; a key belongs to the partition whose range holds Hash(key), and
// each partition is owned by one member. The preference list of a partition is
// the first n distinct owners met walking the partitions clockwise from it; its
// first entry, the owner, coordinates. Fixing the partitions, rather than giving
// each member random tokens, makes the partition the unit of handoff and
// anti-entropy and keeps the ring state a short list.
//
// # Same inputs, same ring
//
// A Ring is a pure function of (P, members in join order, n). Every node
// computes the same ring from the same member list, so nodes need to agree only
// on who joined and in what order, never exchange or merge ring state, and can
// compare Version values to check that they agree. The caller passes members
// sorted by join order and breaks ties itself. Nothing here depends on map
// iteration, math/rand or the platform: SHA-1 and splitmix64 fix every choice.
//
// # Incremental claim
//
// New replays the joins, in the manner of Riak's claim: the first member owns
// every partition, and each next member, the k-th, takes floor(P/k) partitions,
// one at a time, from whichever members own the most at that moment. Replaying
// the history instead of optimising the final list is what makes a join move
// partitions only to the newcomer: the ring of the first k members is the same
// whatever joins later.
//
// Which partition the newcomer takes is chosen so that replica load stays
// even, not just ownership: first one with none of the newcomer's partitions
// within n-1 positions, so the n owners that start any preference list are
// distinct; then one whose current owner has another partition within n-1
// positions, which repairs the clumps that rings with fewer than n members
// cannot avoid; then the lowest hash of (partition, newcomer id). When every n
// consecutive owners are distinct a member is a replica for exactly n times the
// partitions it owns, so replica load is as even as ownership. That is not
// guaranteed, but the tests find it true of every ring they build with at
// least 2n members and n partitions per member; with 256 partitions, 10
// members and n = 3 the busiest member holds about 2% more replicas than the
// mean.
//
// # Invariants
//
//   - A ring with k >= 1 members gives every partition exactly one owner, and
//     every member owns floor(P/k) or ceil(P/k) partitions. With more members
//     than partitions some members own none; they appear in no lookup.
//   - Appending a member to k others moves partitions only to it,
//     floor(P/(k+1)) of them, so a preference list changes only by the
//     newcomer entering it.
//   - PreferenceList(p, n) holds distinct members, starts with Owner(p), and
//     has min(n, members owning a partition) entries.
//   - A Ring is immutable, so it is safe for concurrent use; a membership
//     change builds a new one for the caller to swap in.
//
// # Caveats
//
// Removal is handled by recomputation: the caller passes the shorter list and
// New replays the joins without the departed member. Every member that joined
// after it replays a different history, so partitions also move between
// surviving members and a removal costs more movement than a join. A later
// change may make removal hand the departed member's partitions out directly.
//
// P, n and Hash are constants of a deployment: changing any of them reassigns
// most partitions, and changing P or Hash also moves keys between partitions.
package ring
