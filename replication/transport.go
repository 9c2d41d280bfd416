package replication

import (
	"context"

	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// Transport carries requests between nodes, named by their ids. Every method
// must be safe for concurrent use, honour ctx's deadline, and return an error
// wrapping ErrUnreachable when the request provably did not reach the node.
// Errors the remote handler returned come back wrapped with their sentinel
// (ErrUnavailable, ErrNoReplicas, ErrNotReplica, ErrTooManySiblings) intact
// for errors.Is.
type Transport interface {
	// Fetch reads a replica's copy of a key.
	Fetch(ctx context.Context, to string, req FetchRequest) (FetchResponse, error)
	// Store merges an object into a replica's copy and returns once it is durable.
	Store(ctx context.Context, to string, req StoreRequest) (StoreResponse, error)
	// Coordinate asks a replica to run a client request as its coordinator.
	Coordinate(ctx context.Context, to string, req CoordinateRequest) (CoordinateResponse, error)
	// Range streams one page of a partition a node holds, for moving
	// partitions when the ring changes and for anti-entropy repairs.
	Range(ctx context.Context, to string, req RangeRequest) (RangeResponse, error)
	// Exchange sends one message of a Merkle tree comparison of a
	// partition (anti-entropy) and returns the replica's answer.
	Exchange(ctx context.Context, to string, req ExchangeRequest) (ExchangeResponse, error)
}

// Handler serves what other nodes send through a Transport. The node
// implements it; transports call it concurrently.
type Handler interface {
	HandleFetch(ctx context.Context, from string, req FetchRequest) (FetchResponse, error)
	HandleStore(ctx context.Context, from string, req StoreRequest) (StoreResponse, error)
	HandleCoordinate(ctx context.Context, from string, req CoordinateRequest) (CoordinateResponse, error)
	HandleRange(ctx context.Context, from string, req RangeRequest) (RangeResponse, error)
	HandleExchange(ctx context.Context, from string, req ExchangeRequest) (ExchangeResponse, error)
}

// FetchRequest asks for one replica's copy of a key.
type FetchRequest struct {
	Partition int
	Key       []byte
}

// FetchResponse carries the copy; Object is nil when the replica has none.
type FetchResponse struct {
	Object *version.Object
}

// StoreRequest carries an object to merge into a replica's copy. With
// HintFor set, the receiver is a stand-in: it keeps the object as a hint for
// that node, to hand off once it is reachable, instead of as its own copy.
//
// RingVersion is the version of the ring the sender planned with (zero:
// unknown). A replica whose ring differs passes what it stored on to the
// replicas its own ring names, so a write planned with a ring that is
// being replaced still reaches the new replicas.
type StoreRequest struct {
	Partition   int
	Key         []byte
	Object      *version.Object
	HintFor     string
	RingVersion uint64
	// Sole, with HintFor, marks the hint as possibly the only copy of its
	// value (Hint.Sole): the coordinator was a stand-in, every replica down.
	Sole bool
}

// StoreResponse acknowledges a durable store.
type StoreResponse struct{}

// Op is a client operation forwarded to a coordinator.
type Op uint8

const (
	OpGet Op = iota + 1
	OpPut
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return "unknown"
}

// CoordinateRequest is a client request relayed by a node that does not
// replicate the key. Quorum is the client's r or w (0: the default).
type CoordinateRequest struct {
	Op          Op
	Key         []byte
	Value       []byte
	ContentType string
	// Context is the client's X-Context; HasContext tells an absent header
	// from an empty clock.
	Context    version.Clock
	HasContext bool
	Quorum     int
}

// CoordinateResponse is the coordinator's answer: for reads the merged
// object (nil when no replica had one), for writes the new context.
// Siblings is, for a put that left the key with several live siblings, how
// many the coordinator's copy holds; 0 when it left one, or is not known.
type CoordinateResponse struct {
	Object   *version.Object
	Context  version.Clock
	Siblings int
}

// RangeRequest asks for the keys of a partition after After (nil: from the
// first), up to about MaxBytes of encoded objects (at least one key).
// RingVersion is the receiver's ring: a sender working to another ring
// marks the page incomplete. Buckets, when set, limits the page to the keys
// of those Merkle tree buckets (an anti-entropy repair).
type RangeRequest struct {
	Partition   int
	After       []byte
	MaxBytes    int
	RingVersion uint64
	Buckets     *merkle.Diff
}

// RangeItem is one key of a partition with the sender's copy of it.
type RangeItem struct {
	Key    []byte
	Object *version.Object
}

// RangeResponse is one page of a partition in key order. Next is the After
// of the following page, nil when this page ends the partition. Incomplete
// is set when the sender is itself still receiving the partition, or works
// to another ring than the receiver (it may yet accept writes the receiver
// does not get), so a pass over its pages may not hold every version.
type RangeResponse struct {
	Items      []RangeItem
	Next       []byte
	Incomplete bool
}

// ExchangeRequest carries one message of a Merkle tree comparison of a
// partition (see package merkle).
type ExchangeRequest struct {
	Partition int
	Message   merkle.Message
}

// ExchangeResponse is the replica's answer: a message one level deeper, or
// the outcome (Message.Done).
type ExchangeResponse struct {
	Message merkle.Message
}
