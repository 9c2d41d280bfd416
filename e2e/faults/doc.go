// Package faults checks what the store promises under the faults users
// meet: no acknowledged write is lost, no deleted key comes back, and the
// replicas of every key converge once the faults end.
//
// A run has three parts, each talking to the cluster only through the
// Cluster interface, so that the same run drives an in-process cluster
// (over replication/simnet) or, later, real processes or containers:
//
//   - Plan draws a fault schedule from a seed: kills and restarts, pauses,
//     partitions between random groups and isolated nodes, each for a
//     bounded time, with at most a minority of the nodes affected at once
//     (or a majority, in the mode where unavailability is expected).
//     A Runner applies it on timers and undoes what is left of it. The same
//     seed gives the same schedule.
//   - Workload runs concurrent clients through random live nodes: set-add
//     (read-modify-write with contexts, siblings merged by union),
//     registers (writes with fresh or stale contexts) and deletes (keys
//     written, deleted with a context, never written again). Every request
//     and its outcome is recorded in a History.
//   - After the faults are healed and killed nodes restarted, with no
//     client load, WaitConverged polls every replica's own copy of every
//     key until they are equal, and Check compares those copies with the
//     History.
//
// # What the checker counts, and why it is sound
//
// A write is acknowledged when its PUT returned no error; the dot that
// names it is the one entry by which the returned context exceeds the
// context sent. A version disappears only when a write or delete whose
// context covers its dot reaches it, so:
//
//   - an acknowledged write is lost when its dot is neither held as a
//     sibling nor covered by the context of any other request sent for the
//     key (acknowledged or not: a failed request may still have landed);
//   - a set-add element acknowledged once is lost when it is missing from
//     the union of a replica's siblings: every writer unions what it read;
//   - a deleted key is resurrected when a live sibling's dot is covered by
//     an acknowledged delete's context (a sibling the delete did not see
//     was written concurrently and rightly stays);
//   - a phantom is a value (or set element) that no client ever sent.
//
// Errors the contract answers with 503 (node.ErrUnavailable, ErrNoReplicas,
// ErrNotReady, a deadline) are expected under faults and counted as
// unavailable; any other error is unexpected and fails the run.
//
// # Running it
//
// The same run drives two kinds of cluster, five nodes each (N=3, R=2,
// W=2):
//
//   - in process, over simnet: kill is a graceful Close, pause hangs a
//     node's traffic, partitions are simnet's. Five scenarios: hints and
//     anti-entropy as in production, hints alone, anti-entropy alone, both
//     with tombstones purged after a second, and majority faults.
//   - containers of the real binary (docker_test.go), on a private Docker
//     network, with clients on ports published on 127.0.0.1: docker kill
//     (SIGKILL) and docker start on the same volume, docker pause, and
//     partitions made of iptables rules inside the nodes' network
//     namespaces (nsenter; root needed). The image is deploy/images/build.sh's
//     FROM scratch one, built locally. Without Docker the mode skips,
//     unless DYNAMO_REQUIRE_DOCKER=1 (CI) makes that a failure.
//
// The short mode runs in every `go test` (about 90 seconds in process, and
// two minutes in containers):
//
//	go test -count=1 -v ./e2e/faults/
//	DYNAMO_FAULT_SEED=123 go test -count=1 -v -run 'TestFaults/minority-hints$' ./e2e/faults/
//	go test -count=1 -v -run TestFaultsContainers ./e2e/faults/
//
// Each scenario's seed is derived from its name unless DYNAMO_FAULT_SEED
// is set, and is printed with the command that reproduces it (the
// schedule, not the timing of every request). The soak mode is by hand:
//
//	DYNAMO_SOAK=20m go test -count=1 -v -timeout 0 -run TestFaultSoak ./e2e/faults/
//	DYNAMO_SOAK=20m DYNAMO_SOAK_MODE=containers go test -count=1 -v -timeout 0 -run TestFaultSoak ./e2e/faults/
//
// with DYNAMO_SOAK_ROUND (2m: faults between two checks) and
// DYNAMO_SOAK_SCENARIO (minority-both, or containers) to change it.
package faults
