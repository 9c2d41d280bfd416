package replication

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
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
// preference order, the stand-ins, and the quorum the request needs.
type Plan struct {
	Partition int
	// Replicas are the first N nodes of the key's preference list,
	// coordinator first. The coordinator itself (Config.Self) is among them.
	Replicas []string
	// Fallbacks are the nodes after the first N, in preference order: the
	// stand-ins of a sloppy quorum. Empty means a strict quorum.
	Fallbacks []string
	// Extras are nodes that held the key's partition before a ring change
	// and may still hold versions the new replicas lack: writes go to them
	// too and reads ask them, until the data has moved.
	Extras []string
	// Quorum is R for reads and W for writes, 1 <= Quorum <= len(Replicas).
	Quorum int
}

// CoordinatorConfig configures a Coordinator.
type CoordinatorConfig struct {
	// Self is this node's id, as Plans and the Transport name it.
	Self string
	// Actor returns this node's dot-minting identity for a partition (see
	// package version). It must change whenever the node loses its copy of
	// the partition, so no dot is ever minted twice.
	Actor func(partition int) version.Actor
	// Timeout bounds the work that goes on after the client was answered
	// (late replica stores, the replies read repair waits for). Zero means 2s.
	Timeout time.Duration
	// Now is the clock stamped on new versions; nil means time.Now.
	Now func() time.Time
}

// Deps are the coordinator's collaborators. Store and Transport are
// required; the rest may be nil (no hints kept, every node usable, repairs
// sent inline, no metrics).
type Deps struct {
	Store Store
	// Incomplete reports whether this node is still receiving a
	// partition; nil means never.
	Incomplete func(partition int) bool
	Transport  Transport
	Hints      HintStore
	Health     *Health
	Pipeline   *Pipeline
	Metrics    *Metrics
}

// Coordinator runs quorum reads and writes for keys this node replicates.
// It is safe for concurrent use.
type Coordinator struct {
	cfg CoordinatorConfig
	Deps
}

// NewCoordinator builds a coordinator.
func NewCoordinator(cfg CoordinatorConfig, deps Deps) *Coordinator {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Coordinator{cfg: cfg, Deps: deps}
}

// Put stores a new version of key. It mints the version from the local copy
// (clientCtx supersedes what it covers; nil means a blind write), then
// stores it on the other replicas and returns once plan.Quorum nodes, this
// one and stand-ins included, hold it durably. The returned clock is the
// new version's context: what the client had seen plus the new write.
func (c *Coordinator) Put(ctx context.Context, plan Plan, key, value []byte, contentType string, clientCtx version.Clock) (version.Clock, error) {
	var dot version.Dot
	actor := c.cfg.Actor(plan.Partition) // outside the store's transaction: it may take locks
	obj, err := c.Store.Apply(plan.Partition, key, func(cur *version.Object) (*version.Object, error) {
		var next *version.Object
		next, dot = cur.Write(actor, clientCtx, value, contentType, c.cfg.Now())
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

// Delete removes the versions clientCtx covers. Without a context, it first
// reads the key at the plan's quorum and deletes what that read saw. The
// returned clock is what the delete covered.
func (c *Coordinator) Delete(ctx context.Context, plan Plan, key []byte, clientCtx version.Clock, hasContext bool) (version.Clock, error) {
	if !hasContext {
		seen, err := c.Get(ctx, plan, key)
		if err != nil {
			return nil, err
		}
		clientCtx = seen.Context()
	}
	obj, err := c.Store.Apply(plan.Partition, key, func(cur *version.Object) (*version.Object, error) {
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

// PutAsStandIn coordinates a write on a node outside the key's first N
// when none of them can be reached, so that a write is refused only when
// fewer than W nodes of the whole cluster are up. The version is minted
// from the hints held here, under a fresh single-use actor: this node keeps
// no lasting copy of the key, so its own actor could mint a dot twice. The
// clock grows by one entry per such write, which happens only while every
// replica of the key is down. The write is kept here as a hint for every
// replica and sent to other stand-ins like any write.
func (c *Coordinator) PutAsStandIn(ctx context.Context, plan Plan, key, value []byte, contentType string, clientCtx version.Clock) (version.Clock, error) {
	if c.Hints == nil {
		return nil, ErrNoReplicas
	}
	base, err := c.Hints.Hinted(plan.Partition, key)
	if err != nil {
		return nil, err
	}
	obj, dot := base.Write(ephemeralActor(), clientCtx, value, contentType, c.cfg.Now())
	if err := c.standInWrite(ctx, plan, key, obj); err != nil {
		return nil, err
	}
	return clientCtx.With(dot), nil
}

// DeleteAsStandIn is PutAsStandIn for a delete; without a context it first
// reads the key at the plan's quorum, from stand-ins.
func (c *Coordinator) DeleteAsStandIn(ctx context.Context, plan Plan, key []byte, clientCtx version.Clock, hasContext bool) (version.Clock, error) {
	if c.Hints == nil {
		return nil, ErrNoReplicas
	}
	if !hasContext {
		seen, err := c.Get(ctx, plan, key)
		if err != nil {
			return nil, err
		}
		clientCtx = seen.Context()
	}
	base, err := c.Hints.Hinted(plan.Partition, key)
	if err != nil {
		return nil, err
	}
	if err := c.standInWrite(ctx, plan, key, base.Delete(clientCtx)); err != nil {
		return nil, err
	}
	return clientCtx, nil
}

// standInWrite keeps obj here as a hint for every replica, durably, then
// replicates it as the coordinator would.
func (c *Coordinator) standInWrite(ctx context.Context, plan Plan, key []byte, obj *version.Object) error {
	for _, id := range plan.Replicas {
		if err := c.Hints.AddHint(id, plan.Partition, key, obj); err != nil {
			return fmt.Errorf("replication: keeping a hint for %s: %w", id, err)
		}
	}
	return c.replicate(ctx, plan, key, obj)
}

// ephemeralActor returns a random actor used for one write only.
func ephemeralActor() version.Actor {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return version.Actor(binary.BigEndian.Uint64(b[:]) | 1)
}

// replicate sends obj to every other replica and waits until plan.Quorum
// nodes (counting this one, which already stored it) hold it. A replica
// that is down or fails has the write sent to the next stand-in as a hint
// naming it; with no stand-in left, this node keeps the hint itself, so the
// replica still catches up without a read. Stores still in flight when the
// quorum is reached go on in the background, bounded by the timeout.
func (c *Coordinator) replicate(ctx context.Context, plan Plan, key []byte, obj *version.Object) error {
	targets := append(c.others(plan), plan.Extras...)
	standIns := newStandIns(c.othersOf(plan.Fallbacks), c.Health)
	results := c.fanOut(ctx, targets, func(ctx context.Context, id string) reply {
		if slices.Contains(plan.Extras, id) { // a former holder: no stand-in for it
			incomplete, err := c.storeOn(ctx, id, plan.Partition, key, obj)
			return reply{id: id, err: err, incomplete: incomplete}
		}
		incomplete, err := c.storeOrHint(ctx, plan, key, obj, id, standIns)
		return reply{id: id, err: err, incomplete: incomplete}
	})
	// Acks count like read answers: a node still receiving the partition
	// counts only once no complete ack can come any more.
	acked, complete, received := 1, 1, 0
	if c.Incomplete != nil && c.Incomplete(plan.Partition) {
		complete = 0
	}
	relax, stop := relaxAfter(ctx)
	defer stop()
	relaxed := false
	for complete < plan.Quorum && !((relaxed || received == len(targets)) && acked >= plan.Quorum) {
		if acked+len(targets)-received < plan.Quorum {
			return fmt.Errorf("%w: %d of %d replicas stored the write, %d needed", ErrUnavailable, acked, len(plan.Replicas), plan.Quorum)
		}
		select {
		case <-relax:
			relaxed = true
		case r := <-results:
			received++
			if r.err != nil {
				continue
			}
			acked++
			if !r.incomplete {
				complete++
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d replicas stored the write in time, %d needed", ErrUnavailable, complete, len(plan.Replicas), plan.Quorum)
		}
	}
	return nil
}

// storeOrHint delivers obj for replica id: to id itself when it is usable,
// else (or when that fails) to a stand-in as a hint, else into this node's
// own hints. It returns nil only when another node durably holds obj; a
// hint kept here does not count towards the quorum, since this node's copy
// already did.
func (c *Coordinator) storeOrHint(ctx context.Context, plan Plan, key []byte, obj *version.Object, id string, standIns *standIns) (incomplete bool, err error) {
	req := StoreRequest{Partition: plan.Partition, Key: key, Object: obj}
	err = ErrUnreachable
	// A replica in back-off is skipped only when a stand-in can take its
	// place: the back-off steers writes, it must not refuse them.
	if c.Health.Usable(id) || !standIns.available() {
		attempt, cancel := c.attemptContext(ctx, standIns)
		var resp StoreResponse
		resp, err = c.Transport.Store(attempt, id, req)
		cancel()
		c.Health.observe(id, err)
		c.Metrics.observeReplica(id, "store", err)
		if err == nil {
			return resp.Incomplete, nil
		}
	}
	if c.Hints == nil {
		return false, err
	}
	req.HintFor = id
	for standIn, ok := standIns.next(); ok; standIn, ok = standIns.next() {
		_, serr := c.Transport.Store(ctx, standIn, req)
		c.Health.observe(standIn, serr)
		c.Metrics.observeReplica(standIn, "store", serr)
		if serr == nil {
			c.Metrics.standIn("store")
			return false, nil
		}
	}
	if herr := c.Hints.AddHint(id, plan.Partition, key, obj); herr != nil {
		return false, fmt.Errorf("%w; keeping a hint failed too: %v", err, herr)
	}
	return false, fmt.Errorf("%w (kept a hint for it here)", err)
}

// attemptContext bounds the direct attempt at a replica so that, when a
// stand-in could take over, half the time is left for it.
func (c *Coordinator) attemptContext(ctx context.Context, s *standIns) (context.Context, context.CancelFunc) {
	if s.empty() {
		return ctx, func() {}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithTimeout(ctx, c.cfg.Timeout/2)
	}
	return context.WithTimeout(ctx, time.Until(deadline)/2)
}

// Get reads key from the plan's usable replicas (stand-ins in place of
// unusable ones, since they may hold hints) and returns the merge of the
// first plan.Quorum answers, nil when none had the key. Once every replica
// has answered or the timeout passed, replicas whose copy lacks something
// the merge holds are sent the merge (read repair).
func (c *Coordinator) Get(ctx context.Context, plan Plan, key []byte) (*version.Object, error) {
	standIns := newStandIns(plan.Fallbacks, c.Health)
	targets := append(slices.Clone(plan.Replicas), plan.Extras...)
	results := c.fanOut(ctx, targets, func(ctx context.Context, id string) reply {
		replica := !slices.Contains(plan.Extras, id)
		if id == c.cfg.Self {
			obj, err := c.Store.Get(plan.Partition, key)
			incomplete := c.Incomplete != nil && c.Incomplete(plan.Partition)
			return reply{id: id, obj: obj, err: err, replica: replica, incomplete: incomplete}
		}
		if c.Health.Usable(id) || (replica && !standIns.available()) {
			resp, err := c.Transport.Fetch(ctx, id, FetchRequest{Partition: plan.Partition, Key: key})
			c.Health.observe(id, err)
			c.Metrics.observeReplica(id, "fetch", err)
			if err == nil || !replica {
				return reply{id: id, obj: resp.Object, err: err, replica: replica, incomplete: resp.Incomplete}
			}
		} else if !replica {
			return reply{id: id, err: ErrUnreachable}
		}
		for standIn, ok := standIns.next(); ok; standIn, ok = standIns.next() {
			resp, err := c.Transport.Fetch(ctx, standIn, FetchRequest{Partition: plan.Partition, Key: key})
			c.Health.observe(standIn, err)
			c.Metrics.observeReplica(standIn, "fetch", err)
			if err == nil {
				c.Metrics.standIn("fetch")
				return reply{id: standIn, obj: resp.Object}
			}
		}
		return reply{id: id, err: ErrUnreachable}
	})
	// An answer from a node still receiving the partition counts towards R
	// only once no complete answer can come any more.
	var (
		merged   *version.Object
		answers  []reply
		complete int
		received int
	)
	relax, stop := relaxAfter(ctx)
	defer stop()
	relaxed := false
	for complete < plan.Quorum && !((relaxed || received == len(targets)) && len(answers) >= plan.Quorum) {
		if len(answers)+len(targets)-received < plan.Quorum {
			return nil, fmt.Errorf("%w: %d of %d replicas answered the read, %d needed", ErrUnavailable, len(answers), len(plan.Replicas), plan.Quorum)
		}
		select {
		case <-relax:
			relaxed = true
		case r := <-results:
			received++
			if r.err != nil {
				continue
			}
			answers = append(answers, r)
			merged = version.Merge(merged, r.obj)
			if !r.incomplete {
				complete++
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %d of %d replicas answered the read in time, %d needed", ErrUnavailable, complete, len(plan.Replicas), plan.Quorum)
		}
	}
	go c.readRepair(plan, key, merged, answers, results, len(targets)-received)
	return merged, nil
}

// readRepair waits for the replies still due, then sends the merge of all
// answers to every replica whose copy lacked part of it. Stand-ins are not
// repaired: they hold hints, not copies.
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
	for _, r := range answers {
		if !r.replica || r.obj.Dominates(merged) {
			continue
		}
		repair := func(ctx context.Context) error {
			_, err := c.storeOn(ctx, r.id, plan.Partition, key, merged)
			c.Metrics.readRepair(err)
			return err
		}
		if c.Pipeline == nil {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
			repair(ctx)
			cancel()
		} else if !c.Pipeline.Submit("read_repair", repair) {
			c.Metrics.readRepair(errQueueFull)
		}
	}
}

// storeOn merges obj into one replica's copy, this node included, and
// reports whether that replica is still receiving the partition.
func (c *Coordinator) storeOn(ctx context.Context, id string, partition int, key []byte, obj *version.Object) (incomplete bool, err error) {
	if id == c.cfg.Self {
		_, err := c.Store.Apply(partition, key, func(cur *version.Object) (*version.Object, error) {
			return version.Merge(cur, obj), nil
		})
		return c.Incomplete != nil && c.Incomplete(partition), err
	}
	resp, err := c.Transport.Store(ctx, id, StoreRequest{Partition: partition, Key: key, Object: obj})
	c.Health.observe(id, err)
	c.Metrics.observeReplica(id, "store", err)
	return resp.Incomplete, err
}

// relaxAfter fires halfway to ctx's deadline. Until then a quorum counts
// only nodes with complete copies of the partition; after it, any durable
// ack or answer counts, so a partition in transfer while a complete replica
// hangs costs latency, not availability.
func relaxAfter(ctx context.Context) (<-chan time.Time, func()) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(deadline) / 2)
	return t.C, func() { t.Stop() }
}

// reply is one replica's answer to a fanned-out request. replica is false
// when a stand-in answered in the replica's place.
type reply struct {
	id         string
	obj        *version.Object
	err        error
	replica    bool
	incomplete bool
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
func (c *Coordinator) others(plan Plan) []string { return c.othersOf(plan.Replicas) }

// othersOf returns ids without this node.
func (c *Coordinator) othersOf(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != c.cfg.Self {
			out = append(out, id)
		}
	}
	return out
}

// standIns hands out the fallbacks of one request, each at most once, in
// preference order: usable ones first, then those only in back-off
// (membership still has them up). Safe for the concurrent replica
// goroutines of one request.
type standIns struct {
	health *Health

	mu   sync.Mutex // guards rest
	rest []string
}

func newStandIns(fallbacks []string, h *Health) *standIns {
	return &standIns{health: h, rest: slices.Clone(fallbacks)}
}

func (s *standIns) next() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, usable := range []func(string) bool{s.health.Usable, s.health.Reachable} {
		for i, id := range s.rest {
			if usable(id) {
				s.rest = slices.Delete(s.rest, i, i+1)
				return id, true
			}
		}
	}
	return "", false
}

// available reports whether a usable stand-in is left, without taking it.
func (s *standIns) available() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.rest {
		if s.health.Usable(id) {
			return true
		}
	}
	return false
}

func (s *standIns) empty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rest) == 0
}
