// Package client is a Go client for a dynamo cluster's REST API (openapi.yaml
// at the module root): reads, writes and deletes that carry the causal
// context for the caller, sibling resolution with a caller's merge function,
// retries, and routing of each request straight to a replica of its key.
//
// # Contexts and siblings
//
// Every answer carries an opaque context token (X-Context). A write or delete
// given the token of an earlier read supersedes every version that read saw;
// without one it is concurrent with what exists, and concurrent versions are
// kept side by side as siblings. [Client.Get] returns every sibling with its
// content type and the token; [Client.GetResolve] reads, merges siblings with
// a [MergeFunc] and writes the merge back with the token, so the siblings
// are replaced by one value.
//
// # Routing
//
// With routing on (the default) the client fetches GET /cluster/ring (every
// partition's preference list and a ring version) and GET /cluster (member
// ids, client addresses and states) from any node it knows, and places each
// key exactly as the nodes do: the partition comes from the ring package's
// PartitionOf, the one hashing function of the project, so client and nodes
// cannot disagree. A request goes to the key's coordinator (the first of its
// preference list), then the other replicas, then any other member, then
// the addresses given to [New]: a node that is not a replica would only
// forward it, which costs a hop.
//
// The nodes' key answers do not carry the ring version, so the client learns
// of a new ring by asking again:
//
//   - before the first request (which waits for that answer, up to its own
//     context; if no node answers it goes to the addresses given to New);
//   - when a request finds the ring older than the refresh interval
//     ([WithRingRefresh], 5 seconds by default); that request does not wait,
//     it routes with the ring it has while the new one is fetched;
//   - at once (in the background) after a node failed to answer or answered
//     503, at most once a second.
//
// A fetched ring replaces the old one; a request routed by a stale ring is
// still served, since any node forwards to the key's replicas.
//
// # Retries
//
// A request that gets no answer (connection refused or reset, the attempt's
// deadline) or a 503 is retried on the next node of its list, after an
// exponential back-off with jitter, up to a bounded number of attempts
// ([WithRetry]; 4 attempts, 10 ms doubling to at most 1 s, by default). The
// caller's context bounds everything: a cancelled context ends the wait at
// once. Other answers (4xx, and 500, which is a bug) are returned as an
// [*Error] without retrying. A node that failed to answer, or answered that
// it is not ready (starting or stopping), is tried last by every request of
// the client for the ring refresh interval.
//
// A retried write whose first attempt was in fact stored leaves the value
// twice, as two siblings with equal values: read them as one (the merge of
// [Client.GetResolve] sees both). Deletes retried that way are harmless.
//
// # What always holds
//
//   - A Client is safe for concurrent use; the ring it routes by is swapped
//     atomically and never changed in place.
//   - Every response body is read to its end and closed, so connections are
//     reused.
//   - The client never fails a request because of its ring: a missing,
//     stale or unreachable ring only costs a forwarding hop.
//   - Keys are sent percent-encoded, so any key the store accepts (1 to
//     1024 bytes, no NUL; "/", "." and ".." included) names itself.
package client
