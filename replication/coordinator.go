package replication

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// Store is what the coordinator needs of its node's durable storage.
// Implementations must be safe for concurrent use.
type Store interface {
	// Get returns this node's copy of a key, nil when it has none.
	Get(partition int, key []byte) (*version.Object, error)
	// Apply atomically replaces the key's object with fn(current) and returns
	// the object stored, once durable. fn may run more than once and must
	// have no side effects; returning the current object unchanged (Equal)
	// may skip the write.
	Apply(partition int, key []byte, fn func(cur *version.Object) (*version.Object, error)) (*version.Object, error)
}

// Plan says where one request goes: the key's partition, its replicas in
// preference order, and the quorum the request needs.
type Plan struct {
	Partition int
	// Replicas are the nodes that should hold the key, coordinator first.
	// The coordinator itself (Config.Self) is among them.
	Replicas []string
	// Quorum is R for reads and W for writes, 1 <= Quorum <= len(Replicas).
	Quorum int
}

// CoordinatorConfig configures a Coordinator.
type CoordinatorConfig struct {
	// Self is this node's id, as Plans and the Transport name it.
	Self string
	// Actor is this node's dot-minting identity (see package version).
	Actor version.Actor
	// Timeout bounds the work that goes on after the client was answered
	// (late replica stores). Zero means 2s.
	Timeout time.Duration
	// Now is the clock stamped on new versions; nil means time.Now.
	Now func() time.Time
}

// Coordinator runs quorum reads and writes for keys this node replicates.
// It is safe for concurrent use.
type Coordinator struct {
	cfg       CoordinatorConfig
	store     Store
	transport Transport
	metrics   *Metrics
}

// NewCoordinator builds a coordinator. metrics may be nil.
func NewCoordinator(cfg CoordinatorConfig, store Store, transport Transport, metrics *Metrics) *Coordinator {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Coordinator{cfg: cfg, store: store, transport: transport, metrics: metrics}
}

// Put stores a new version of key. It mints the version from the local copy
// (ctx's clock supersedes what it covers; hasContext false means a blind
// write), then stores it on the other replicas and returns once plan.Quorum
// replicas, this one included, hold it durably. The returned clock is the
// new version's context: what the client had seen plus the new write.
func (c *Coordinator) Put(ctx context.Context, plan Plan, key, value []byte, contentType string, clientCtx version.Clock) (version.Clock, error) {
	var dot version.Dot
	obj, err := c.store.Apply(plan.Partition, key, func(cur *version.Object) (*version.Object, error) {
		var next *version.Object
		next, dot = cur.Write(c.cfg.Actor, clientCtx, value, contentType, c.cfg.Now())
		return next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("replication: local write: %w", err)
	}
	if err := c.replicate(ctx, plan, key, obj); err != nil {
		return nil, err
	}
	return clientCtx.With(dot), nil
}

// Delete removes the versions clientCtx covers. Without a context (nil), it
// first reads the key at the plan's quorum and deletes what that read saw.
// The returned clock is what the delete covered.
func (c *Coordinator) Delete(ctx context.Context, plan Plan, key []byte, clientCtx version.Clock, hasContext bool) (version.Clock, error) {
	if !hasContext {
		seen, err := c.Get(ctx, plan, key)
		if err != nil {
			return nil, err
		}
		clientCtx = seen.Context()
	}
	obj, err := c.store.Apply(plan.Partition, key, func(cur *version.Object) (*version.Object, error) {
		return cur.Delete(clientCtx), nil
	})
	if err != nil {
		return nil, fmt.Errorf("replication: local delete: %w", err)
	}
	if err := c.replicate(ctx, plan, key, obj); err != nil {
		return nil, err
	}
	return clientCtx, nil
}

// replicate sends obj to every other replica and waits until plan.Quorum
// replicas (counting this one, which already stored it) hold it. Stores
// still in flight when the quorum is reached go on in the background,
// bounded by the configured timeout.
func (c *Coordinator) replicate(ctx context.Context, plan Plan, key []byte, obj *version.Object) error {
	others := c.others(plan)
	results := c.fanOut(ctx, others, func(ctx context.Context, id string) reply {
		_, err := c.transport.Store(ctx, id, StoreRequest{Partition: plan.Partition, Key: key, Object: obj})
		c.metrics.observeReplica(id, "store", err)
		return reply{id: id, err: err}
	})
	need, acked, failed := plan.Quorum-1, 0, 0
	for acked < need {
		if failed > len(others)-need {
			return fmt.Errorf("%w: %d of %d replicas stored the write, %d needed", ErrUnavailable, acked+1, len(plan.Replicas), plan.Quorum)
		}
		select {
		case r := <-results:
			if r.err == nil {
				acked++
			} else {
				failed++
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d replicas stored the write in time, %d needed", ErrUnavailable, acked+1, len(plan.Replicas), plan.Quorum)
		}
	}
	return nil
}

// Get reads key from the plan's replicas and returns the merge of the first
// plan.Quorum answers (nil when none had the key). Once every replica has
// answered or the timeout passed, replicas whose copy lacks something the
// merge holds are sent the merge (read repair).
func (c *Coordinator) Get(ctx context.Context, plan Plan, key []byte) (*version.Object, error) {
	results := c.fanOut(ctx, plan.Replicas, func(ctx context.Context, id string) reply {
		if id == c.cfg.Self {
			obj, err := c.store.Get(plan.Partition, key)
			return reply{id: id, obj: obj, err: err}
		}
		resp, err := c.transport.Fetch(ctx, id, FetchRequest{Partition: plan.Partition, Key: key})
		c.metrics.observeReplica(id, "fetch", err)
		return reply{id: id, obj: resp.Object, err: err}
	})
	var (
		merged  *version.Object
		answers []reply
		failed  int
	)
	for len(answers) < plan.Quorum {
		if failed > len(plan.Replicas)-plan.Quorum {
			return nil, fmt.Errorf("%w: %d of %d replicas answered the read, %d needed", ErrUnavailable, len(answers), len(plan.Replicas), plan.Quorum)
		}
		select {
		case r := <-results:
			if r.err != nil {
				failed++
				continue
			}
			answers = append(answers, r)
			merged = version.Merge(merged, r.obj)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %d of %d replicas answered the read in time, %d needed", ErrUnavailable, len(answers), len(plan.Replicas), plan.Quorum)
		}
	}
	go c.readRepair(plan, key, merged, answers, results, len(plan.Replicas)-len(answers)-failed)
	return merged, nil
}

// readRepair waits for the replies still due, then sends the merge of all
// answers to every replica whose copy lacked part of it.
func (c *Coordinator) readRepair(plan Plan, key []byte, merged *version.Object, answers []reply, late <-chan reply, due int) {
	for ; due > 0; due-- {
		r := <-late // fanOut's own timeout guarantees every reply arrives
		if r.err == nil {
			answers = append(answers, r)
			merged = version.Merge(merged, r.obj)
		}
	}
	if merged == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	for _, r := range answers {
		if r.obj.Dominates(merged) {
			continue
		}
		err := c.storeOn(ctx, r.id, plan.Partition, key, merged)
		c.metrics.readRepair(err)
	}
}

// storeOn merges obj into one replica, this node included.
func (c *Coordinator) storeOn(ctx context.Context, id string, partition int, key []byte, obj *version.Object) error {
	if id == c.cfg.Self {
		_, err := c.store.Apply(partition, key, func(cur *version.Object) (*version.Object, error) {
			return version.Merge(cur, obj), nil
		})
		return err
	}
	_, err := c.transport.Store(ctx, id, StoreRequest{Partition: partition, Key: key, Object: obj})
	c.metrics.observeReplica(id, "store", err)
	return err
}

// reply is one replica's answer to a fanned-out request.
type reply struct {
	id  string
	obj *version.Object
	err error
}

// fanOut runs call for every id concurrently and returns a channel that
// receives exactly one reply per id. Calls run under their own deadline,
// detached from ctx's cancellation, so a client that hangs up or is
// answered early does not cut replication short.
func (c *Coordinator) fanOut(ctx context.Context, ids []string, call func(context.Context, string) reply) <-chan reply {
	results := make(chan reply, len(ids))
	if len(ids) == 0 {
		return results
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { results <- call(bg, id) })
	}
	go func() {
		wg.Wait()
		cancel()
	}()
	return results
}

// others returns the plan's replicas other than this node.
func (c *Coordinator) others(plan Plan) []string {
	out := make([]string, 0, len(plan.Replicas))
	for _, id := range plan.Replicas {
		if id != c.cfg.Self {
			out = append(out, id)
		}
	}
	return out
}
