// Package simnet is an in-memory network of replication nodes for tests, in
// the manner of hashicorp/raft's InmemTransport: every node registers its
// replication.Handler under its id, and Transport(id) is what that node uses
// to call the others. Tests then break the network on purpose: partitions,
// paused (hung) processes, dropped messages and random delays, all drawn
// from one seeded source so a failing run can be replayed.
//
// # What always holds
//
//   - A call that fails with an error wrapping replication.ErrUnreachable
//     never ran a handler: the target was unregistered, on the other side of
//     a partition, or the request was dropped. Any other outcome (including
//     a lost response, ErrResponseLost) may have run it, as on a real network.
//   - Every call honours its context: delays, pauses and slow handlers end
//     with ctx.Err() once ctx is done. A handler left running then finishes
//     on its own, like a remote process the caller stopped waiting for.
//   - Nodes never share memory. Requests and responses are deep-copied, and
//     objects go through their binary encoding exactly as on the wire, so an
//     object the encoding rejects fails here too.
//   - Handlers run with a fresh context carrying the caller's deadline and
//     cancellation but none of its values.
//   - Errors a handler returns reach the caller unchanged, so errors.Is
//     works with the replication sentinels.
//
// Calls from an id that is not registered are allowed (a test client may
// call nodes directly); partitions apply to it like to any other id.
package simnet
