package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/peer"
	"github.com/dynamo-kv/dynamo/replication/version"
	"github.com/dynamo-kv/dynamo/ring"
)

// Node is one running member of the cluster: its store, its view of the
// membership and ring, and the coordinator for the keys it replicates.
// Its methods are safe for concurrent use.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	db      *store.DB
	objects *objectStore
	ae      *replication.AntiEntropy // nil when anti-entropy is off
	ident   identity
	actors  *actors
	mover   *mover
	load    *loadStats
	// left is closed once the node has handed off its data and left.
	left    chan struct{}
	leaving atomic.Bool

	table      *memberTable
	membership Membership
	transport  replication.Transport
	peerServer *peer.Listener // nil when cfg.Transport was given
	coord      *replication.Coordinator
	health     *replication.Health
	pipeline   *replication.Pipeline
	hints      hintStore
	handoff    *replication.Handoff // nil when hinted handoff is off
	registry   *prometheus.Registry
	metrics    *nodeMetrics
	replMetric *replication.Metrics
	siblings   *siblingWatch

	// states is the latest member states by id, refreshed in the
	// background so the request path never asks membership.
	states atomic.Pointer[map[string]string]
	// peerAddrs is every member's peer address by id, refreshed with
	// states.
	peerAddrs atomic.Pointer[map[string]string]

	ring     atomic.Pointer[ring.Ring]
	stopping atomic.Bool
	// awaitingJoin is set while a new node told to --join has not met any
	// other member yet: its ring of one would place keys wrongly.
	awaitingJoin bool

	// gate lets Close wait for requests in flight: each holds a read lock.
	gate   sync.RWMutex
	closed bool // guarded by gate

	stopOnce sync.Once
	done     chan struct{} // closed by Close to stop background loops
	loops    sync.WaitGroup
}

var _ replication.Handler = (*Node)(nil)

// New opens the data dir, starts the peer listener and membership, and
// returns a node ready to serve (Ready turns true once it has a ring).
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger = logger.With("node", cfg.ID)
	registry := cfg.Registry
	if registry == nil {
		registry = prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	db, err := store.Open(cfg.DataDir, store.Options{MaxHints: cfg.MaxHints})
	if err != nil {
		return nil, err
	}
	switch c := db.Compaction(); {
	case c.Err != nil:
		logger.Warn("could not compact the data file; going on with it as it is", "bytes", c.BeforeBytes, "err", c.Err)
	case c.Done:
		logger.Info("compacted the data file, giving free space back", "before_bytes", c.BeforeBytes, "after_bytes", c.AfterBytes, "took", c.Took)
	}
	n := &Node{
		cfg:      cfg,
		logger:   logger,
		db:       db,
		objects:  &objectStore{db: db},
		table:    newMemberTable(),
		registry: registry,
		done:     make(chan struct{}),
		left:     make(chan struct{}),
	}
	if err := n.start(); err != nil {
		n.closeResources()
		return nil, err
	}
	return n, nil
}

func (n *Node) start() error {
	ident, created, err := loadIdentity(n.db, n.cfg.ID, n.cfg.Now())
	if err != nil {
		return err
	}
	n.ident = ident
	if n.actors, err = loadActors(n.db, ident.Actor); err != nil {
		return fmt.Errorf("actor epochs: %w", err)
	}
	n.mover = newMover(n)
	n.load = newLoadStats(n.cfg.Now())
	if err := n.mover.load(); err != nil {
		return fmt.Errorf("transfer progress: %w", err)
	}
	// What the data dir held: the keys, the hints for other nodes, and
	// partition transfers a restart interrupted, which resume now.
	stats, _ := n.db.Stats()
	hints := 0
	if counts, err := n.db.HintCounts(); err == nil {
		for _, c := range counts {
			hints += c
		}
	}
	n.logger.Info("store opened", "dir", n.cfg.DataDir, "new", created, "keys", stats.Keys,
		"hints", hints, "transfers_to_resume", n.mover.progress().Pending, "file_bytes", stats.FileBytes)

	if saved, err := n.db.GetMeta(metaMembers); err != nil {
		return err
	} else if saved != nil {
		n.table.merge(saved, nil)
	}
	self := Member{
		ID:         n.cfg.ID,
		Addr:       n.cfg.advertised(n.cfg.Listen),
		PeerAddr:   n.cfg.advertised(n.cfg.PeerListen),
		GossipAddr: n.cfg.advertised(n.cfg.GossipListen),
		Joined:     ident.Joined,
		State:      StateAlive,
	}

	n.transport = n.cfg.Transport
	if n.transport == nil {
		n.transport = peer.NewTransport(peer.Options{Self: n.cfg.ID, Resolve: n.peerAddr})
	}
	n.metrics = newNodeMetrics(n.registry, n)
	n.siblings = newSiblingWatch(n.cfg, n.logger, n.registry)
	n.replMetric = replication.NewMetrics(n.registry)
	n.health = replication.NewHealth(replication.HealthConfig{Down: n.memberDown, Now: n.cfg.Now})
	n.pipeline = replication.NewPipeline(replication.PipelineConfig{TaskTimeout: n.cfg.RequestTimeout}, n.registry)
	n.hints = hintStore{db: n.db, metrics: n.replMetric, logger: n.logger, grace: n.cfg.TombstoneGrace,
		timeout: n.cfg.RequestTimeout, now: n.cfg.Now}
	deps := replication.Deps{
		Store:     n.objects,
		Replan:    n.replan,
		Transport: n.transport,
		Health:    n.health,
		Pipeline:  n.pipeline,
		Metrics:   n.replMetric,
	}
	if n.cfg.HintedHandoff {
		deps.Hints = n.hints
	}
	n.coord = replication.NewCoordinator(replication.CoordinatorConfig{
		Self:        n.cfg.ID,
		Actor:       n.actors.For,
		Timeout:     n.cfg.RequestTimeout,
		Now:         n.cfg.Now,
		MaxSiblings: n.cfg.MaxSiblings,
	}, deps)
	// Hints already stored are delivered even if hinted handoff was turned
	// off since: they carry acknowledged writes.
	n.handoff = replication.NewHandoff(replication.HandoffConfig{
		Timeout:   n.cfg.RequestTimeout,
		Logger:    n.logger,
		Gone:      n.memberGone,
		Redeliver: n.redeliver,
		Stale:     n.hints.Stale,
	}, n.hints, n.transport, n.health, n.pipeline, n.replMetric)
	if n.cfg.AntiEntropyInterval > 0 {
		n.objects.trees = replication.NewTrees()
		n.ae = replication.NewAntiEntropy(replication.AntiEntropyConfig{
			Interval: n.cfg.AntiEntropyInterval,
			Grace:    n.cfg.TombstoneGrace,
			Replicas: n.fellowReplicas,
			Now:      n.cfg.Now,
			Logger:   n.logger,
		}, n.objects, n.objects.trees, n.transport, n.health, n.pipeline, n.registry)
		n.objects.ae = n.ae
	}
	// Serve peers only now: their requests need everything above.
	if n.cfg.Transport == nil {
		ln, err := peer.Listen(n.cfg.PeerListen, n)
		if err != nil {
			return fmt.Errorf("peer-listen: %w", err)
		}
		n.peerServer = ln
	}

	n.membership = n.cfg.Membership
	if n.membership == nil {
		n.awaitingJoin = len(n.cfg.Join) > 0 && len(n.table.list()) == 0
		n.table.upsert(self)
		g, err := startGossip(n.cfg, self, n.table, n.seeds(), n.logger)
		if err != nil {
			return err
		}
		n.membership = g
	}
	n.rebuildRing()
	n.refreshStates()
	n.loops.Go(n.watchMembership)
	ctx, cancel := context.WithCancel(context.Background())
	n.loops.Go(func() {
		<-n.done
		cancel()
	})
	n.loops.Go(func() { n.handoff.Run(ctx) })
	n.loops.Go(func() { n.mover.run(ctx) })
	if n.ae != nil {
		n.loops.Go(func() { n.ae.Run(ctx) })
	}
	return nil
}

// fellowReplicas lists, for anti-entropy, the partitions this node
// replicates with their other replicas; not while data follows a ring
// change (partition handoff is at work then, and replica sets move).
func (n *Node) fellowReplicas() (map[int][]string, bool) {
	r := n.ring.Load()
	if r == nil || !n.mover.steady() {
		return nil, false
	}
	nReplicas := min(n.cfg.N, len(r.Members()))
	out := map[int][]string{}
	for _, p := range r.Replicas(n.cfg.ID, nReplicas) {
		out[p] = slices.DeleteFunc(r.PreferenceList(p, nReplicas), func(id string) bool { return id == n.cfg.ID })
	}
	return out, true
}

// seeds are the gossip addresses to join: --join, or else the members this
// data dir remembers, so a restarted node finds its cluster again.
func (n *Node) seeds() []string {
	if len(n.cfg.Join) > 0 {
		return n.cfg.Join
	}
	var out []string
	for _, m := range n.table.list() {
		if m.ID != n.cfg.ID && m.State != StateLeft && m.GossipAddr != "" {
			out = append(out, m.GossipAddr)
		}
	}
	return out
}

// watchMembership rebuilds the ring whenever membership changes, and
// refreshes member states (which change without a notification when
// memberlist suspects a node) a few times a second.
func (n *Node) watchMembership() {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-n.membership.Changes():
			n.rebuildRing()
			n.refreshStates()
		case <-ticker.C:
			n.refreshStates()
		}
	}
}

// refreshStates snapshots member states for memberDown; a member that
// comes back up gets its hints without waiting for the next pass.
func (n *Node) refreshStates() {
	old := n.states.Load()
	states := map[string]string{}
	addrs := map[string]string{}
	for _, m := range n.membership.Members() {
		states[m.ID] = m.State
		if m.PeerAddr != "" {
			addrs[m.ID] = m.PeerAddr
		}
		if old != nil && (*old)[m.ID] != StateAlive && m.State == StateAlive && n.handoff != nil {
			n.handoff.Wake()
		}
	}
	n.peerAddrs.Store(&addrs)
	n.states.Store(&states)
}

// memberGone reports whether id has left the cluster for good (left or
// removed), so hints for it must go to the key's current replicas.
func (n *Node) memberGone(id string) bool {
	states := n.states.Load()
	return states != nil && (*states)[id] == StateLeft
}

// redeliver hands a hint meant for a departed node to the key's current
// replicas; it succeeds once every reachable one of them stored it.
func (n *Node) redeliver(ctx context.Context, h replication.Hint) error {
	r := n.ring.Load()
	if r == nil {
		return ErrNotReady
	}
	for _, id := range r.PreferenceList(h.Partition, n.Quorums().N) {
		var err error
		if id == n.cfg.ID {
			_, err = n.objects.Apply(h.Partition, h.Key, func(cur *version.Object) (*version.Object, error) {
				return version.Merge(cur, h.Object), nil
			})
		} else {
			_, err = n.transport.Store(ctx, id, replication.StoreRequest{Partition: h.Partition, Key: h.Key, Object: h.Object})
		}
		if err != nil {
			return fmt.Errorf("redelivering a hint for %s to %s: %w", h.Target, id, err)
		}
	}
	return nil
}

// memberDown reports whether membership suspects id or knows it is down.
func (n *Node) memberDown(id string) bool {
	states := n.states.Load()
	if states == nil {
		return false
	}
	st, ok := (*states)[id]
	return ok && st != StateAlive
}

// rebuildRing computes the ring from the current members and, when it
// changed, swaps it in and remembers the members in the data dir.
func (n *Node) rebuildRing() {
	members := n.membership.Members()
	sortMembers(members)
	ids := make([]string, 0, len(members))
	for _, m := range members {
		if m.inRing() {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	r, err := ring.New(n.cfg.Partitions, ids, n.cfg.N)
	if err != nil {
		n.logger.Error("cannot build ring", "members", ids, "err", err)
		return
	}
	if old := n.ring.Load(); old != nil && old.Version() == r.Version() && slices.Equal(old.Members(), r.Members()) {
		return
	}
	// The mover learns of the ring first, so that partitions this node must
	// still receive are marked incomplete before it acts on the ring. A node
	// told to join has a ring of itself alone until it meets the cluster;
	// no data should move for that ring.
	if !n.awaitingJoin || len(ids) > 1 {
		n.mover.onRing(r)
	}
	n.ring.Store(r)
	n.logger.Info("ring changed", "members", ids, "version", fmt.Sprintf("%016x", r.Version()))
	if n.cfg.Membership == nil {
		if err := n.db.PutMeta(metaMembers, n.table.marshal()); err != nil {
			n.logger.Error("cannot persist members", "err", err)
		}
	}
}

// peerAddr resolves a member id to its peer address for the transport.
// It reads the table refreshStates keeps, so the request path never copies
// the member list; before the first refresh it asks membership.
func (n *Node) peerAddr(id string) (string, bool) {
	if addrs := n.peerAddrs.Load(); addrs != nil {
		addr, ok := (*addrs)[id]
		return addr, ok
	}
	for _, m := range n.membership.Members() {
		if m.ID == id && m.PeerAddr != "" {
			return m.PeerAddr, true
		}
	}
	return "", false
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Registry returns the registry holding the node's metrics.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Ready reports whether the node serves requests: its store is open, it
// has a ring (with another member, when it was started to join a cluster),
// and it is not shutting down.
func (n *Node) Ready() bool {
	r := n.ring.Load()
	return !n.stopping.Load() && !n.leaving.Load() && r != nil && (!n.awaitingJoin || len(r.Members()) > 1)
}

// Quorums returns the effective N, R and W: the configured values capped
// at the member count.
func (n *Node) Quorums() Quorums {
	members := 0
	if r := n.ring.Load(); r != nil {
		members = len(r.Members())
	}
	q := Quorums{N: min(n.cfg.N, members)}
	q.R = min(n.cfg.R, q.N)
	q.W = min(n.cfg.W, q.N)
	return q
}

// plan works out where a request for key goes. quorum 0 means default.
func (n *Node) plan(key []byte, quorum, def int) (replication.Plan, error) {
	if !n.Ready() {
		return replication.Plan{}, ErrNotReady
	}
	r := n.ring.Load()
	q := n.Quorums()
	if quorum == 0 {
		quorum = def
	}
	if quorum < 1 || quorum > q.N {
		return replication.Plan{}, fmt.Errorf("%w: got %d with N=%d", ErrBadQuorum, quorum, q.N)
	}
	return n.planPartition(r, r.PartitionOf(key), quorum), nil
}

// planPartition is plan for a partition of ring r, with a valid quorum.
func (n *Node) planPartition(r *ring.Ring, p, quorum int) replication.Plan {
	nReplicas := min(n.cfg.N, len(r.Members()))
	plan := replication.Plan{Partition: p, Quorum: min(quorum, nReplicas), RingVersion: r.Version()}
	if n.cfg.HintedHandoff {
		all := r.PreferenceList(p, len(r.Members()))
		plan.Replicas, plan.Fallbacks = all[:nReplicas], all[nReplicas:]
	} else {
		plan.Replicas = r.PreferenceList(p, nReplicas)
	}
	plan.Previous = n.mover.previous(p, plan.Replicas)
	return plan
}

// replan is the coordinator's Replan: the plan for the same partition
// under the newest ring, when the ring changed since plan was made.
func (n *Node) replan(plan replication.Plan) (replication.Plan, bool) {
	r := n.ring.Load()
	if r == nil || r.Version() == plan.RingVersion {
		return plan, false
	}
	return n.planPartition(r, plan.Partition, plan.Quorum), true
}

// Put stores a value (see replication.Coordinator.Put), forwarding to a
// replica of the key when this node is not one, and returns the new
// version's context (PutVersion tells the siblings too).
func (n *Node) Put(ctx context.Context, req PutRequest) (version.Clock, error) {
	res, err := n.PutVersion(ctx, req)
	return res.Context, err
}

// PutVersion is Put, also telling how many siblings the key holds after the
// write. A write that would leave more than MaxSiblings, and more than the
// key holds, fails with ErrTooManySiblings and stores nothing.
func (n *Node) PutVersion(ctx context.Context, req PutRequest) (PutResult, error) {
	if err := n.enter(); err != nil {
		return PutResult{}, err
	}
	defer n.exit()
	defer n.observeForeground(time.Now())
	plan, err := n.plan(req.Key, req.W, n.Quorums().W)
	if err != nil {
		return PutResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if n.replicates(plan) {
		clock, siblings, err := n.coord.Put(ctx, plan, req.Key, req.Value, req.ContentType, contextOrNil(req.Context, req.HasContext))
		n.metrics.coordinated("put", err)
		n.siblings.observe("put", req.Key, siblings, err)
		return putResult(clock, siblings), err
	}
	resp, err := n.forward(ctx, plan, replication.CoordinateRequest{
		Op: replication.OpPut, Key: req.Key, Value: req.Value, ContentType: req.ContentType,
		Context: req.Context, HasContext: req.HasContext, Quorum: req.W,
	})
	return putResult(resp.Context, resp.Siblings), err
}

// putResult is what a put reports: the sibling count only when it is
// several, as the peer protocol carries it.
func putResult(clock version.Clock, siblings int) PutResult {
	if siblings < 2 {
		siblings = 0
	}
	return PutResult{Context: clock, Siblings: siblings}
}

// Get reads a key at quorum R, forwarding when this node is not a replica.
func (n *Node) Get(ctx context.Context, req GetRequest) (*version.Object, error) {
	if err := n.enter(); err != nil {
		return nil, err
	}
	defer n.exit()
	defer n.observeForeground(time.Now())
	plan, err := n.plan(req.Key, req.R, n.Quorums().R)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if n.replicates(plan) {
		obj, err := n.coord.Get(ctx, plan, req.Key)
		n.metrics.coordinated("get", err)
		n.metrics.observeSiblings(obj, err)
		n.siblings.read(req.Key, obj, err)
		return obj, err
	}
	resp, err := n.forward(ctx, plan, replication.CoordinateRequest{Op: replication.OpGet, Key: req.Key, Quorum: req.R})
	return resp.Object, err
}

// Delete removes the versions the context covers (or, without one, what a
// quorum read sees), forwarding when this node is not a replica.
func (n *Node) Delete(ctx context.Context, req DeleteRequest) (version.Clock, error) {
	if err := n.enter(); err != nil {
		return nil, err
	}
	defer n.exit()
	defer n.observeForeground(time.Now())
	plan, err := n.plan(req.Key, req.W, n.Quorums().W)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	if n.replicates(plan) {
		clock, err := n.coord.Delete(ctx, plan, req.Key, req.Context, req.HasContext)
		n.metrics.coordinated("delete", err)
		return clock, err
	}
	resp, err := n.forward(ctx, plan, replication.CoordinateRequest{
		Op: replication.OpDelete, Key: req.Key, Context: req.Context, HasContext: req.HasContext, Quorum: req.W,
	})
	return resp.Context, err
}

// observeForeground feeds a client request's latency to the background
// pipeline's admission control.
func (n *Node) observeForeground(start time.Time) {
	now := n.cfg.Now()
	n.pipeline.ObserveForeground(now.Sub(start))
	n.load.observe(now.Sub(start), now)
}

// progress is what this node publishes about itself: the mover's state,
// its hints and its client load.
func (n *Node) progress() Progress {
	p := n.mover.progress()
	p.Rate, p.P99 = n.load.figures(n.cfg.Now())
	if counts, err := n.db.HintCounts(); err == nil {
		for _, c := range counts {
			p.Hints += c
		}
	}
	return p
}

// GetLocal returns this node's own copy of key: no forwarding, quorum or repair.
func (n *Node) GetLocal(key []byte) (*version.Object, error) {
	if err := n.enter(); err != nil {
		return nil, err
	}
	defer n.exit()
	r := n.ring.Load()
	if r == nil {
		return nil, ErrNotReady
	}
	return n.objects.Get(r.PartitionOf(key), key)
}

func (n *Node) replicates(plan replication.Plan) bool {
	return slices.Contains(plan.Replicas, n.cfg.ID)
}

// forward relays a request to the first replica that can be reached.
func (n *Node) forward(ctx context.Context, plan replication.Plan, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	// Replicas in back-off are tried last rather than not at all.
	order := make([]string, 0, len(plan.Replicas))
	for _, id := range plan.Replicas {
		if n.health.Usable(id) {
			order = append(order, id)
		}
	}
	for _, id := range plan.Replicas {
		if !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	for _, id := range order {
		resp, err := n.transport.Coordinate(ctx, id, req)
		if errors.Is(err, replication.ErrUnreachable) || errors.Is(err, replication.ErrNotReady) {
			// It had no effect there: a node starting or stopping refuses
			// a request before doing anything.
			n.health.Failed(id)
			n.logger.Debug("coordinator unreachable or not ready, trying next", "peer", id, "err", err)
			continue
		}
		if errors.Is(err, replication.ErrOutcomeUnknown) {
			// The coordinator took the request and died or was cut off
			// before answering. A read changed nothing: ask the next. A
			// write may or may not have been applied, so it is not sent
			// again under a new dot; the client hears 503, as for any
			// write whose quorum was not confirmed.
			n.health.Failed(id)
			if req.Op == replication.OpGet {
				n.logger.Debug("coordinator failed mid-read, trying next", "peer", id, "err", err)
				continue
			}
			err = fmt.Errorf("%w: coordinator %s failed before answering; the write may or may not have been applied: %w",
				replication.ErrUnavailable, id, err)
		}
		n.health.Succeeded(id)
		n.metrics.coordinated("forward", err)
		return resp, err
	}
	if n.cfg.HintedHandoff {
		return n.coordinateAsStandIn(ctx, plan, req)
	}
	n.metrics.coordinated("forward", replication.ErrNoReplicas)
	return replication.CoordinateResponse{}, fmt.Errorf("%w: tried %s", replication.ErrNoReplicas, strings.Join(plan.Replicas, ", "))
}

// coordinateAsStandIn runs a request here although this node does not
// replicate the key, because none of its replicas can be reached: reads and
// writes go to stand-ins, so the cluster stays available while W (or R)
// nodes are up.
func (n *Node) coordinateAsStandIn(ctx context.Context, plan replication.Plan, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	var (
		resp replication.CoordinateResponse
		err  error
	)
	switch req.Op {
	case replication.OpGet:
		resp.Object, err = n.coord.Get(ctx, plan, req.Key)
		n.siblings.read(req.Key, resp.Object, err)
	case replication.OpPut:
		resp.Context, resp.Siblings, err = n.coord.PutAsStandIn(ctx, plan, req.Key, req.Value, req.ContentType, contextOrNil(req.Context, req.HasContext))
		n.siblings.observe("put", req.Key, resp.Siblings, err)
	case replication.OpDelete:
		resp.Context, err = n.coord.DeleteAsStandIn(ctx, plan, req.Key, req.Context, req.HasContext)
	}
	n.metrics.coordinated("standin_"+req.Op.String(), err)
	return resp, err
}

func contextOrNil(c version.Clock, has bool) version.Clock {
	if !has {
		return nil
	}
	return c
}

// HandleFetch serves a replica read for another node's coordinator.
// A stand-in answers with the hints it holds for the key too, since
// coordinators read from stand-ins in place of unreachable replicas.
func (n *Node) HandleFetch(_ context.Context, _ string, req replication.FetchRequest) (replication.FetchResponse, error) {
	if err := n.enter(); err != nil {
		return replication.FetchResponse{}, err
	}
	defer n.exit()
	obj, err := n.objects.Get(req.Partition, req.Key)
	if err != nil {
		return replication.FetchResponse{}, err
	}
	hinted, err := n.hints.Hinted(req.Partition, req.Key)
	return replication.FetchResponse{Object: version.Merge(obj, hinted)}, err
}

// HandleRange serves a page of a partition to a node that is receiving it.
func (n *Node) HandleRange(_ context.Context, _ string, req replication.RangeRequest) (replication.RangeResponse, error) {
	if err := n.enter(); err != nil {
		return replication.RangeResponse{}, err
	}
	defer n.exit()
	resp := replication.RangeResponse{Incomplete: n.mover.isPending(req.Partition) || n.mover.ringVersion() != req.RingVersion}
	size := 0
	errPageFull := errors.New("page full")
	err := n.db.ScanFrom(uint32(req.Partition), req.After, func(key, value []byte) error {
		if req.Buckets != nil && !req.Buckets.Contains(key) {
			return nil
		}
		if len(resp.Items) > 0 && size >= req.MaxBytes {
			resp.Next = slices.Clone(resp.Items[len(resp.Items)-1].Key)
			return errPageFull
		}
		obj, err := decodeObject(value, req.Partition)
		if err != nil {
			return err
		}
		resp.Items = append(resp.Items, replication.RangeItem{Key: slices.Clone(key), Object: obj})
		size += len(key) + recordPlainLen(value)
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return replication.RangeResponse{}, err
	}
	return resp, nil
}

// HandleExchange answers one step of another replica's anti-entropy
// comparison of a partition this node replicates.
func (n *Node) HandleExchange(_ context.Context, _ string, req replication.ExchangeRequest) (replication.ExchangeResponse, error) {
	if err := n.enter(); err != nil {
		return replication.ExchangeResponse{}, err
	}
	defer n.exit()
	if n.ae == nil {
		return replication.ExchangeResponse{}, fmt.Errorf("%w: anti-entropy is off on %s", replication.ErrUnavailable, n.cfg.ID)
	}
	if !n.mover.holds(req.Partition) {
		return replication.ExchangeResponse{}, fmt.Errorf("%w: partition %d", replication.ErrNotReplica, req.Partition)
	}
	return n.ae.HandleExchange(req)
}

// retirePartition drops this node's copy of a partition it no longer
// replicates, first giving the partition a new actor (see actors).
func (n *Node) retirePartition(p int) error {
	if err := n.actors.retire(p); err != nil {
		return err
	}
	return n.objects.Drop(p)
}

// Leave takes this node out of the ring: it stops serving clients, the
// others pull its partitions, and once every live member is in sync with
// the ring without it, it leaves the cluster and Left is closed.
func (n *Node) Leave() error {
	if n.leaving.Swap(true) {
		return nil
	}
	n.logger.Info("leaving the cluster: handing off data")
	n.mover.mu.Lock()
	n.mover.leaving = true
	n.mover.mu.Unlock()
	n.membership.Publish(n.progress())
	n.loops.Go(n.awaitHandoffThenLeave)
	return nil
}

// awaitHandoffThenLeave waits until the ring without this node is in
// effect everywhere and nobody is pulling, then leaves membership.
func (n *Node) awaitHandoffThenLeave() {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-ticker.C:
		}
		r := n.ring.Load()
		if r == nil || slices.Contains(r.Members(), n.cfg.ID) || !n.mover.synced() {
			continue
		}
		if err := n.membership.Leave(); err != nil {
			n.logger.Warn("leaving membership", "err", err)
		}
		n.logger.Info("left the cluster")
		close(n.left)
		return
	}
}

// Settled reports whether data has finished following the last ring
// change everywhere: every live member works to this node's ring with
// nothing to receive, and this node dropped what it no longer replicates.
func (n *Node) Settled() bool {
	if !n.mover.synced() {
		return false
	}
	m := n.mover
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rings) == 1 && m.droppedFor == m.rings[0].Version()
}

// Left is closed once a node asked to Leave has handed off and left.
func (n *Node) Left() <-chan struct{} { return n.left }

// Remove forgets a member that died for good; the survivors rebuild its
// partitions from the remaining replicas.
func (n *Node) Remove(id string) error {
	if id == n.cfg.ID {
		return fmt.Errorf("%w: a node cannot remove itself; ask it to leave", ErrMemberAlive)
	}
	return n.membership.Remove(id)
}

// HandleStore merges a version sent by a coordinator (or a repair, or a
// handoff) into this node's copy, durably; a stand-in keeps it as a hint.
func (n *Node) HandleStore(ctx context.Context, _ string, req replication.StoreRequest) (replication.StoreResponse, error) {
	if err := n.enter(); err != nil {
		return replication.StoreResponse{}, err
	}
	defer n.exit()
	if req.HintFor != "" && req.HintFor != n.cfg.ID {
		return replication.StoreResponse{}, n.hints.AddHint(req.HintFor, req.Partition, req.Key, req.Object, req.Sole)
	}
	if !n.mover.holds(req.Partition) {
		// A coordinator with another ring view: refuse, so the write goes
		// to a stand-in (or a hint) rather than to a copy nobody keeps.
		return replication.StoreResponse{}, fmt.Errorf("%w: partition %d", replication.ErrNotReplica, req.Partition)
	}
	changed := false
	stored, err := n.objects.Apply(req.Partition, req.Key, func(cur *version.Object) (*version.Object, error) {
		merged := version.Merge(cur, req.Object)
		changed = !merged.Equal(cur)
		return merged, nil
	})
	if err != nil {
		return replication.StoreResponse{}, err
	}
	if r := n.ring.Load(); changed && req.RingVersion != 0 && r != nil && r.Version() != req.RingVersion {
		// The coordinator planned with another ring: the replicas this
		// node's ring names may not have been sent the write. Pass it on
		// before acknowledging, so it is not lost when this node drops a
		// partition it no longer replicates. Replicas that cannot take it
		// get hints, so the outcome of the quorum does not matter here.
		ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
		plan := n.planPartition(r, req.Partition, n.Quorums().W)
		if err := n.coord.Replicate(ctx, plan, req.Key, stored); err != nil {
			n.logger.Debug("passing on a write planned with another ring", "partition", req.Partition, "err", err)
		}
		n.metrics.staleForwards.Inc()
	}
	return replication.StoreResponse{}, nil
}

// HandleCoordinate runs a request another node forwarded. It coordinates
// here even if this node's ring view disagrees, so a request is forwarded
// at most once.
func (n *Node) HandleCoordinate(ctx context.Context, _ string, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	if err := n.enter(); err != nil {
		return replication.CoordinateResponse{}, err
	}
	defer n.exit()
	if n.stopping.Load() {
		return replication.CoordinateResponse{}, ErrNotReady
	}
	var (
		resp replication.CoordinateResponse
		plan replication.Plan
		err  error
	)
	q := n.Quorums()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	switch req.Op {
	case replication.OpGet:
		if plan, err = n.plan(req.Key, req.Quorum, q.R); err == nil {
			resp.Object, err = n.coord.Get(ctx, plan, req.Key)
			n.metrics.observeSiblings(resp.Object, err)
			n.siblings.read(req.Key, resp.Object, err)
		}
	case replication.OpPut:
		if plan, err = n.plan(req.Key, req.Quorum, q.W); err == nil {
			resp.Context, resp.Siblings, err = n.coord.Put(ctx, plan, req.Key, req.Value, req.ContentType, contextOrNil(req.Context, req.HasContext))
			n.siblings.observe("put", req.Key, resp.Siblings, err)
		}
	case replication.OpDelete:
		if plan, err = n.plan(req.Key, req.Quorum, q.W); err == nil {
			resp.Context, err = n.coord.Delete(ctx, plan, req.Key, req.Context, req.HasContext)
		}
	default:
		return resp, fmt.Errorf("unknown operation %d", req.Op)
	}
	n.metrics.coordinated(req.Op.String(), err)
	return resp, err
}

// Cluster describes the cluster as this node sees it.
func (n *Node) Cluster() ClusterInfo {
	q := n.Quorums()
	info := ClusterInfo{ID: n.cfg.ID, N: q.N, R: q.R, W: q.W, Partitions: n.cfg.Partitions, Members: []MemberInfo{}}
	for _, m := range n.membership.Members() {
		if m.ID == n.cfg.ID {
			m.Progress = n.progress()
		}
		info.Members = append(info.Members, MemberInfo{
			ID: m.ID, Addr: m.Addr, PeerAddr: m.PeerAddr, GossipAddr: m.GossipAddr, State: m.State,
			Leaving: m.Leaving, Partitions: m.Owned, PartitionsInTransfer: m.Pending, BytesMoved: m.BytesMoved,
			HintsPending: m.Hints, RequestsPerSecond: m.Rate, P99Seconds: m.P99,
		})
	}
	return info
}

// KeyInfo tells where key lives.
func (n *Node) KeyInfo(key []byte) KeyInfo {
	info := KeyInfo{Key: string(key), PreferenceList: []string{}}
	if r := n.ring.Load(); r != nil {
		info.Partition = r.PartitionOf(key)
		info.PreferenceList = r.PreferenceList(info.Partition, n.Quorums().N)
	}
	return info
}

// RingMembers returns the members that own partitions in this node's ring,
// in join order.
func (n *Node) RingMembers() []string {
	if r := n.ring.Load(); r != nil {
		return r.Members()
	}
	return nil
}

// Ring returns every partition's preference list and the ring's version.
func (n *Node) Ring() RingInfo {
	r := n.ring.Load()
	info := RingInfo{Partitions: n.cfg.Partitions, PreferenceLists: [][]string{}}
	if r == nil {
		return info
	}
	q := n.Quorums()
	var v [8]byte
	for i := range v {
		v[i] = byte(r.Version() >> (56 - 8*i))
	}
	info.Version = hex.EncodeToString(v[:])
	info.N = q.N
	for p := range r.Partitions() {
		info.PreferenceLists = append(info.PreferenceLists, r.PreferenceList(p, q.N))
	}
	return info
}

// PendingHints returns how many hints this node holds, by target.
func (n *Node) PendingHints() (map[string]int, error) { return n.db.HintCounts() }

// enter admits one request unless the node is closed; exit must follow.
func (n *Node) enter() error {
	n.gate.RLock()
	if n.closed {
		n.gate.RUnlock()
		return ErrNotReady
	}
	return nil
}

func (n *Node) exit() { n.gate.RUnlock() }

// Drain makes the node report not ready and refuse new requests, so a load
// balancer stops sending before Close.
func (n *Node) Drain() { n.stopping.Store(true) }

// Close stops the node: membership (without leaving the ring), the peer
// listener after in-flight replica requests, background loops, and the
// store. It is safe to call more than once.
func (n *Node) Close() error {
	var err error
	n.stopOnce.Do(func() {
		n.stopping.Store(true)
		n.gate.Lock() // waits for requests in flight
		n.closed = true
		n.gate.Unlock()
		if n.coord != nil {
			// Stores still on their way to replicas after their client was
			// answered keep a hint when they fail: the store must be open.
			n.coord.Wait()
		}
		close(n.done)
		n.loops.Wait()
		err = n.closeResources()
	})
	return err
}

func (n *Node) closeResources() error {
	var errs []error
	if n.membership != nil && n.cfg.Membership == nil {
		errs = append(errs, n.membership.Shutdown())
	}
	if n.pipeline != nil {
		n.pipeline.Close()
	}
	if n.peerServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
		errs = append(errs, n.peerServer.Close(ctx))
		cancel()
	}
	if t, ok := n.transport.(interface{ Close() }); ok && n.cfg.Transport == nil {
		t.Close()
	}
	errs = append(errs, n.db.Close())
	return errors.Join(errs...)
}
