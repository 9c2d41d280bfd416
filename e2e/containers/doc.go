// Package containers holds the deployment tests: they run the repository's
// docker-compose.yml for real (three dynamo containers joined by gossip,
// HAProxy and nginx in front) and check the external contract through the
// load balancers' published ports, while nodes are killed, paused, cut
// off and restarted under load through both.
//
// The images come from deploy/images/build.sh, which needs no image
// registry: the dynamo binary built here on an empty base, and the load
// balancers on a Debian made with debootstrap.
//
// The package has no non-test code. Each test run uses its own compose
// project and loopback ports chosen by Docker, and removes its containers,
// network and volumes when it ends, also when it fails. Where no Docker
// engine answers or the images cannot be built, the tests are skipped,
// unless DYNAMO_REQUIRE_DOCKER=1 asks for a failure instead; -short skips
// them always.
package containers
