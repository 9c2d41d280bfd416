// Command dynamo-bench is a load generator for dynamo's REST API.
//
// It either starts a local cluster of the real dynamo binary (--nodes, on
// loopback ports with temporary data dirs, stopped and removed on exit and
// on Ctrl-C) or targets running nodes (--targets). It writes --keys keys,
// then runs a YCSB-style mix (A 50/50, B 95/5, C reads only, W writes
// only) with --clients closed-loop clients for a warm-up and a measured
// window, and reports throughput, errors by kind, latency percentiles per
// operation, and the CPU used by itself, by the nodes and by the rest of
// the machine. --json prints the same as one JSON object. bench/README.md
// has the command lines and the results table.
//
// # What always holds
//
//   - Requests go round robin over every node, as a load balancer would;
//     with --forwarding, each goes either to the key's coordinator or to a
//     node outside its preference list, chosen at random per operation.
//   - An update reads the key and writes with the X-Context it got, so a
//     client's write supersedes what it read (read-modify-write); --blind
//     writes without a context, and siblings then grow on hot keys.
//   - 200 and 300 (siblings) are successful reads; a 404 is an error when
//     the keys were preloaded.
//   - One http.Transport serves every client, with at least one idle
//     connection per client per node, and every body is read to its end
//     and closed, so connections are reused as a real client's are.
//   - Only operations that start inside the measured window are counted,
//     and their latency is the whole operation as the client saw it.
//     Latencies go into log-linear histograms with three significant
//     digits; max is exact.
//   - The load is closed-loop: a client waits for its answer before its
//     next request, so when the cluster slows down the offered load drops
//     with it, and tail latencies understate what an open-loop (fixed-rate)
//     client would see.
package main
