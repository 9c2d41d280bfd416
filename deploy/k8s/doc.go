// Package k8s holds no code: its directory holds the Kubernetes manifests
// for a three-node cluster (kubectl apply -k deploy/k8s), and its test is
// what stands in for a cluster here.
//
// The test decodes every manifest and checks what a typo would silently
// break at run time: selectors against pod labels, the StatefulSet's
// headless Service, ports between the DYNAMO_*_LISTEN variables, the
// container and the Services, probes, the --join seeds, the data volume,
// the disruption budget, resources, the grace period against the node's
// shutdown, and that every DYNAMO_* variable is a flag of cmd/dynamo (read
// from its source).
package k8s
