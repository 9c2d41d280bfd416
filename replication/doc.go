// Package replication keeps N copies of every key consistent enough to never
// lose an acknowledged write: the coordinator that runs quorum reads and
// writes over a Transport, and the messages replicas exchange.
//
// The coordinator of a key is always one of its replicas. It mints every new
// version from its own durable copy before anything leaves the node, so dots
// are unique (see package version) and a coordinator that acknowledged a write
// holds it itself. That copy is also where a write is admitted: one that
// would leave the key with more than MaxSiblings siblings, and more than it
// holds, is refused (ErrTooManySiblings) before anything is stored, while
// merging what other nodes accepted is never refused, so nothing
// acknowledged is ever dropped. A request is answered as soon as R reads or
// W durable stores succeeded; the remaining replicas are still contacted,
// within the request timeout, after the client has its answer.
//
// Nothing here knows HTTP, bbolt or memberlist: storage is the Store
// interface, the network is the Transport interface (replication/peer for
// real, replication/simnet for tests), and which nodes hold a key is decided
// by the caller and passed in as a Plan.
package replication
