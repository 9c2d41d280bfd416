// Package peer is the node-to-node transport: the HTTP client and server of
// replication.Transport, in one package the way groupcache's http.go holds
// both sides of its peer interface. Node wiring mounts NewServer on the
// --peer-listen address and gives NewTransport to the coordinator.
//
// # Protocol
//
// HTTP/1.1 with keep-alive connections. Each call is one POST to
// PathPrefix+{fetch,store,coordinate,range} ("/peer/v1/..."; the protocol version
// is in the path), with the caller's id in X-Dynamo-From, its remaining
// time in X-Dynamo-Timeout, and a binary body (application/octet-stream,
// see codec.go) of at most MaxBodyBytes. A 200 answer carries the binary
// response; any other status carries text: a code word on the first line
// (see the Code constants) and a message.
//
// # What always holds
//
//   - The server answers nothing but the peer routes: every other path is a
//     404, so the peer listener never serves a client route.
//   - A handler is called only with a request read in full and decoded
//     without error. Malformed bodies get 400, oversized ones 413, and the
//     handler never sees them. Decoders never panic and never alias their
//     input.
//   - The handler's context ends when the caller's deadline passes or the
//     caller hangs up.
//   - An error wraps replication.ErrUnreachable only when the call's last
//     attempt never got a connection (unknown id, bad address, dial failure,
//     a context that ended while dialling), so the node did not see it.
//     (net/http makes a second attempt only after the first wrote nothing,
//     or for an idempotent Fetch, Store or Range whose kept-alive connection
//     the server had closed.) Once a request may have been written, a failure is
//     ErrOutcomeUnknown instead, never ErrUnreachable.
//   - A handler's ErrUnavailable, ErrNoReplicas, ErrNotReplica,
//     ErrTooManySiblings and ErrNotReady come back as a *RemoteError that
//     errors.Is matches against the same sentinel; any
//     other handler error (ErrUnreachable included: the node itself was
//     reached) comes back as code "internal".
//   - Fetch, Store and Range are idempotent and may be resent by net/http
//     when a kept-alive connection turns out to be closed; Coordinate never
//     is.
//
// The client closes connections idle for 30s. Give the peer http.Server a
// longer IdleTimeout (say 90s) so that the client, not the server, ends idle
// connections and a request never races a server-side close.
package peer
