package replication

import "errors"

var (
	// ErrUnreachable reports that a node could not be reached at all, so the
	// request had no effect there and may be sent elsewhere.
	ErrUnreachable = errors.New("replication: node unreachable")
	// ErrOutcomeUnknown reports that a node took a request but its answer
	// never came (the connection broke, or the node died or was cut off
	// mid-request): the request may or may not have had its effect there.
	ErrOutcomeUnknown = errors.New("replication: outcome unknown")
	// ErrNotReady reports a request refused by a node that is starting or
	// stopping, before it did anything: it may be sent elsewhere.
	ErrNotReady = errors.New("node: not ready")
	// ErrUnavailable reports that fewer than R (or W) replicas answered
	// before the deadline. A write may still exist on fewer replicas.
	ErrUnavailable = errors.New("replication: not enough replicas answered in time")
	// ErrNoReplicas reports that no node of the key's preference list could
	// coordinate the request.
	ErrNoReplicas = errors.New("replication: no replica of the key is reachable")
	// ErrNotReplica reports a store refused by a node whose ring does not
	// place the key's partition there (ring views differ during a change).
	ErrNotReplica = errors.New("replication: this node does not replicate the partition")
	// ErrTooManySiblings reports a write refused by its coordinator because
	// it would leave the key with more live siblings than the limit
	// (CoordinatorConfig.MaxSiblings) and more than it holds now. Nothing
	// was stored; a write whose context covers a sibling is never refused.
	ErrTooManySiblings = errors.New("replication: the key holds too many siblings")
)

// isAnswer reports whether err is a deliberate answer from a healthy node
// (its own quorum could not be met) rather than a sign that it is unwell.
func isAnswer(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoReplicas) || errors.Is(err, ErrNotReplica) ||
		errors.Is(err, ErrTooManySiblings)
}

// errQueueFull reports background work dropped because its queue was full.
var errQueueFull = errors.New("replication: background queue full")
