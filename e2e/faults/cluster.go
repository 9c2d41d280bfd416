package faults

import (
	"context"
	"errors"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// ErrUnavailable is what a Cluster wraps every error the contract answers
// with 503 in (too few replicas, no replica reachable, node not ready,
// deadline passed): expected under faults, and no sign of a bug.
var ErrUnavailable = errors.New("faults: unavailable")

// Cluster is what a run needs of a cluster: client requests through a
// chosen node, each replica's own copy of a key, and the faults. Every
// method must be safe for concurrent use, except that the Injector's
// methods are only called from one goroutine.
type Cluster interface {
	// Nodes returns every node's id, up or down, in a fixed order.
	Nodes() []string
	// Up returns the nodes a load balancer would send requests to now:
	// running and ready (a paused node looks up from outside).
	Up() []string

	// Put writes value (as text/plain) to key through node via. clock is
	// the causal context the client last saw (nil with hasContext false
	// for a blind write). It returns the new version's context.
	Put(ctx context.Context, via, key string, value []byte, clock version.Clock, hasContext bool) (version.Clock, error)
	// Get reads key at the default quorum through node via. A key with no
	// live version reads as a Read with no siblings.
	Get(ctx context.Context, via, key string) (Read, error)
	// Delete deletes what clock covers through node via, and returns the
	// context the delete covered.
	Delete(ctx context.Context, via, key string, clock version.Clock) (version.Clock, error)

	// Replicas returns key's preference list: the first N node ids.
	Replicas(key string) ([]string, error)
	// Local returns node id's own copy of key, with no forwarding, quorum
	// or repair.
	Local(id, key string) (Read, error)

	Injector
}

// Injector applies faults. Its methods are called from one goroutine, and
// each fault is undone by its counterpart (Kill by Restart, Pause by
// Resume, Partition by Reconnect).
type Injector interface {
	// Kill stops node id abruptly; its data stays for Restart.
	Kill(id string) error
	// Restart starts a killed node again on its data.
	Restart(id string) error
	// Pause hangs node id: it neither answers nor sends until Resume.
	Pause(id string) error
	// Resume ends a Pause.
	Resume(id string) error
	// Partition splits the network: only nodes in the same group can talk;
	// nodes named in no group form one more group. It replaces any earlier
	// partition.
	Partition(groups ...[]string) error
	// Reconnect ends any partition; pauses stay.
	Reconnect() error
}

// Read is a version of a key as a client or a replica sees it.
type Read struct {
	// Context covers every version the read saw; a write carrying it
	// supersedes all of them.
	Context version.Clock
	// Siblings are the live versions, none for a missing or deleted key.
	Siblings []Sibling
	// Object is the stored object itself, where the cluster can show it
	// (in process); Same then compares objects exactly. nil otherwise, and
	// for a key never stored.
	Object *version.Object
	// Exact tells that Object is set (or nil because nothing is stored).
	Exact bool
	// ETag identifies the version state where Object is not available
	// (over HTTP, ?local=true's ETag).
	ETag string
}

// Sibling is one live version.
type Sibling struct {
	Value []byte
	// Dot names the write that made it, when HasDot; over HTTP a replica's
	// copy does not show dots, and the checker falls back on the dot the
	// write's acknowledgement named.
	Dot    version.Dot
	HasDot bool
}

// Same reports whether two replicas hold identical versions of a key.
func (r Read) Same(o Read) bool {
	if r.Exact && o.Exact {
		return r.Object.Equal(o.Object)
	}
	return r.ETag == o.ETag && r.Context.Equal(o.Context)
}

// ReadOf is the Read of an object a cluster holds in process (nil: never
// stored).
func ReadOf(obj *version.Object) Read {
	r := Read{Context: obj.Context(), Object: obj, Exact: true, ETag: obj.ETag()}
	if obj != nil {
		for _, s := range obj.Siblings {
			r.Siblings = append(r.Siblings, Sibling{Value: s.Value, Dot: s.Dot, HasDot: true})
		}
	}
	return r
}
