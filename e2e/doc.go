// Package e2e holds the end-to-end tests of the store: they build the real
// dynamo binary, start a cluster of separate processes on loopback ports and
// check the external contract (CONTRACT.md) over real HTTP, as a black box.
//
// The package has no non-test code. The tests never reach beyond 127.0.0.1,
// kill every process they start (also when a test fails), and are skipped
// under -short.
package e2e
