package node

import (
	"errors"

	"github.com/dynamo-kv/dynamo/replication"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// PutRequest is a client write. W is the client's write quorum, 0 for the
// node's default; HasContext tells a missing X-Context from an empty one.
type PutRequest struct {
	Key         []byte
	Value       []byte
	ContentType string
	Context     version.Clock
	HasContext  bool
	W           int
}

// PutResult is what a client write left: the new version's context, and
// how many live siblings the key holds after it when that is several (0:
// one version, or not known, as from a coordinator running an older build).
type PutResult struct {
	Context  version.Clock
	Siblings int
}

// DeleteRequest is a client delete. Without a context the coordinator reads
// the key at R and deletes what it saw.
type DeleteRequest struct {
	Key        []byte
	Context    version.Clock
	HasContext bool
	W          int
}

// GetRequest is a client read. R is the client's read quorum, 0 for the default.
type GetRequest struct {
	Key []byte
	R   int
}

// Quorums are the effective replication settings: the configured N, R and
// W capped at the number of members.
type Quorums struct {
	N int `json:"n"`
	R int `json:"r"`
	W int `json:"w"`
}

// Member states as GET /cluster reports them.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// MemberInfo is one member as GET /cluster reports it.
type MemberInfo struct {
	ID         string `json:"id"`
	Addr       string `json:"addr"`
	PeerAddr   string `json:"peer_addr"`
	GossipAddr string `json:"gossip_addr"`
	State      string `json:"state"`
	// Leaving is set while the member hands off its data before it goes.
	Leaving bool `json:"leaving"`
	// Partitions is how many partitions the member owns.
	Partitions int `json:"partitions"`
	// PartitionsInTransfer is how many it is still receiving.
	PartitionsInTransfer int `json:"partitions_in_transfer"`
	// BytesMoved is the partition data it has received so far.
	BytesMoved int64 `json:"bytes_moved"`
	// HintsPending is how many hints it holds for other nodes.
	HintsPending int `json:"hints_pending"`
	// RequestsPerSecond and P99Seconds describe the client requests it
	// coordinated or forwarded in its last complete load window.
	RequestsPerSecond float64 `json:"requests_per_second"`
	P99Seconds        float64 `json:"p99_seconds"`
}

// ClusterInfo is GET /cluster.
type ClusterInfo struct {
	ID         string       `json:"id"`
	N          int          `json:"n"`
	R          int          `json:"r"`
	W          int          `json:"w"`
	Partitions int          `json:"partitions"`
	Members    []MemberInfo `json:"members"`
}

// KeyInfo is GET /cluster/keys/{key}.
type KeyInfo struct {
	Key            string   `json:"key"`
	Partition      int      `json:"partition"`
	PreferenceList []string `json:"preference_list"`
}

// RingInfo is GET /cluster/ring: every partition's preference list, and a
// version that changes whenever the ring does.
type RingInfo struct {
	Version         string     `json:"version"`
	Partitions      int        `json:"partitions"`
	N               int        `json:"n"`
	PreferenceLists [][]string `json:"preference_lists"`
}

var (
	// ErrBadQuorum reports an r or w outside 1..N.
	ErrBadQuorum = errors.New("node: quorum must be between 1 and N")
	// ErrUnknownMember reports a remove of an id that is not a member.
	ErrUnknownMember = errors.New("node: no such member")
	// ErrMemberAlive reports a remove of a member that is still up: it
	// should be asked to leave instead.
	ErrMemberAlive = errors.New("node: member is alive; ask it to leave instead")
)

// Errors of the replication layer that reach clients, re-exported so callers
// of node need not import replication.
var (
	ErrUnavailable = replication.ErrUnavailable
	ErrNoReplicas  = replication.ErrNoReplicas
	// ErrNotReady reports a request reaching a node that is starting or
	// stopping; it had no effect there.
	ErrNotReady = replication.ErrNotReady
	// ErrTooManySiblings reports a write refused because the key would
	// hold more than MaxSiblings live siblings; nothing was stored. A write
	// carrying the context of a read of the key is never refused.
	ErrTooManySiblings = replication.ErrTooManySiblings
)
