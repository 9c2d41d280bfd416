// Package api is the client-facing HTTP layer of a node: the key-value routes
// under /keys, the cluster views and membership changes (leave, remove) under
// /cluster, health and readiness probes, Prometheus metrics and a small live
// page at /ui. Sections 2 and 3 of the external contract (CONTRACT.md) and
// openapi.yaml at the module root are the specification; this package
// implements exactly that.
//
// Handlers only parse, call the core through the Service interface, and
// encode. They know nothing of replication: quorums, forwarding and repair
// all live behind Service (implemented by *node.Node).
//
// # What always holds
//
//   - A request is validated completely (key, r/w, X-Context, body size)
//     before Service is called, so a rejected request changes nothing stored.
//   - Every 4xx and 5xx answer of /keys and /cluster routes, including 404 for
//     unknown paths, 405 for wrong methods and 500 after a panic, is
//     application/json {"error": "<sentence>", "code": "<word>"}; errorFor is
//     the one place that turns an error into a status and a code.
//   - The key is taken from the escaped request path exactly as the client sent
//     it and percent-decoded once, with no path cleaning: "a//b", "." and ".."
//     are keys of their own and "%2F" is a "/" inside the key.
//   - Request metrics are labelled with the chi route pattern ("/keys/*"),
//     never the raw path, so their cardinality is fixed by the router.
//   - Nothing is global: New builds a fresh router every call and registers
//     metrics only on Options.Registry.
//   - NewServer is the http.Server a node runs New with. Its connections turn
//     the plain-text errors net/http answers before any handler runs (a
//     request line it cannot parse, such as "/keys/%zz"; headers over
//     MaxHeaderBytes) into the same status with the JSON error body
//     (connerrors.go), and a request body must arrive within BodyTimeout.
//
// # Caveats
//
// Go's HTTP server rejects a request line with invalid percent-encoding
// ("/keys/%zz") on its own, before any handler runs: behind NewServer the
// answer is 400 bad_request, not bad_key, which only a handler mounted
// behind something that passes such paths through can answer.
package api
