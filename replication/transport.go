package replication

import (
	"context"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// Transport carries requests between nodes, named by their ids. Every method
// must be safe for concurrent use, honour ctx's deadline, and return an error
// wrapping ErrUnreachable when the request provably did not reach the node.
// Errors the remote handler returned come back wrapped with their sentinel
// (ErrUnavailable, ErrNoReplicas) intact for errors.Is.
type Transport interface {
	// Fetch reads a replica's copy of a key.
	Fetch(ctx context.Context, to string, req FetchRequest) (FetchResponse, error)
	// Store merges an object into a replica's copy and returns once it is durable.
	Store(ctx context.Context, to string, req StoreRequest) (StoreResponse, error)
	// Coordinate asks a replica to run a client request as its coordinator.
	Coordinate(ctx context.Context, to string, req CoordinateRequest) (CoordinateResponse, error)
}

// Handler serves what other nodes send through a Transport. The node
// implements it; transports call it concurrently.
type Handler interface {
	HandleFetch(ctx context.Context, from string, req FetchRequest) (FetchResponse, error)
	HandleStore(ctx context.Context, from string, req StoreRequest) (StoreResponse, error)
	HandleCoordinate(ctx context.Context, from string, req CoordinateRequest) (CoordinateResponse, error)
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
type StoreRequest struct {
	Partition int
	Key       []byte
	Object    *version.Object
	HintFor   string
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
type CoordinateResponse struct {
	Object  *version.Object
	Context version.Clock
}
