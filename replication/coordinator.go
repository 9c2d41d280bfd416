package replication

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
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
//
// While data follows a ring change, a request needs its quorum twice over
// (a joint quorum, as in Raft's joint consensus): among Replicas, and
// among each list in Previous, the key's replicas under the older rings
// its data may still be on. Every coordinator keeps the rings since the
// data was last in place everywhere, so any two quorums of the transition,
// whichever ring view their coordinators had, intersect in some list: no
// read sees less than a read before the change would have.
type Plan struct {
	Partition int
	// Replicas are the first N nodes of the key's preference list,
	// coordinator first. The coordinator itself (Config.Self) is usually
	// among them; a node that replicated the key under an older ring may
	// coordinate a write it accepted late (see Coordinator.Replicate).
	Replicas []string
	// Fallbacks are the nodes after the first N, in preference order: the
	// stand-ins of a sloppy quorum. Empty means a strict quorum.
	Fallbacks []string
	// Previous are the key's replicas under older rings, oldest first,
	// while data may still be moving from them to Replicas.
	Previous [][]string
	// Quorum is R for reads and W for writes, 1 <= Quorum <= len(Replicas).
	// Each Previous list needs as many, or all of it when it is shorter.
	Quorum int
	// RingVersion identifies the ring the plan was made with; stores carry
	// it, so a replica can tell a coordinator that has not yet seen its
	// newer ring.
	RingVersion uint64
}

// targets lists every node of the plan's lists once: Replicas in order,
// then the nodes only previous rings name.
func (p Plan) targets() []string {
	out := slices.Clone(p.Replicas)
	for _, list := range p.Previous {
		for _, id := range list {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// tally counts acks or answers towards a plan's joint quorum. An ack a
// stand-in gave in a node's place counts as that node's. In a previous
// list, an ack from a node outside it also stands in for a member that
// failed, or, once the tally is relaxed (half the request's time has
// passed), for one that has not answered: the write is on that many
// distinct nodes all the same, and a member of an old list that died or
// hangs must not make the cluster unwritable while data moves (the sloppy
// quorum of the old ring).
type tally struct {
	lists [][]string
	need  []int
	got   []int
	// failed and due count each list's members that failed or have not
	// answered; spare counts acks from nodes outside a previous list.
	failed, due, spare []int
	// outstanding is how many replies are still to come.
	outstanding int
	relaxed     bool
}

func newTally(p Plan, outstanding int) *tally {
	t := &tally{lists: append([][]string{p.Replicas}, p.Previous...), outstanding: outstanding}
	for _, list := range t.lists {
		t.need = append(t.need, min(p.Quorum, len(list)))
		t.got = append(t.got, 0)
		t.failed = append(t.failed, 0)
		t.due = append(t.due, len(list))
		t.spare = append(t.spare, 0)
	}
	return t
}

// add records id's outcome: this node's own, or a reply (see reply).
func (t *tally) add(id string, ok bool) {
	for i, list := range t.lists {
		switch {
		case slices.Contains(list, id):
			t.due[i]--
			if ok {
				t.got[i]++
			} else {
				t.failed[i]++
			}
		case ok && i > 0:
			t.spare[i]++
		}
	}
}

// reply records the outcome of one of the outstanding replies.
func (t *tally) reply(id string, ok bool) {
	t.outstanding--
	t.add(id, ok)
}

// retire lifts the quorum of every previous list with id in it: id said it
// no longer replicates the partition, so it dropped its copy, which a node
// does only once the data is in place under a newer ring everywhere. Such
// a list is left over from a transition that is over.
func (t *tally) retire(id string) {
	for i, list := range t.lists[1:] {
		if slices.Contains(list, id) {
			t.need[i+1] = 0
		}
	}
}

// have is how many acks list i counts.
func (t *tally) have(i int) int {
	if i == 0 {
		return t.got[0]
	}
	missing := t.failed[i]
	if t.relaxed {
		missing += t.due[i]
	}
	return t.got[i] + min(t.spare[i], missing)
}

// met reports whether every list has its quorum.
func (t *tally) met() bool {
	for i := range t.lists {
		if t.have(i) < t.need[i] {
			return false
		}
	}
	return true
}

// doomed reports whether the quorum can no longer be met: the current
// replicas cannot make theirs, or nothing more is to come.
func (t *tally) doomed() bool {
	return t.got[0]+t.due[0] < t.need[0] || (t.outstanding == 0 && !t.met())
}

// shortfall describes the first list short of its quorum.
func (t *tally) shortfall(what string) string {
	for i := range t.lists {
		if t.have(i) >= t.need[i] {
			continue
		}
		s := fmt.Sprintf("%d of %d replicas %s, %d needed", t.have(i), len(t.lists[i]), what, t.need[i])
		if i > 0 {
			s += " (of the replicas under the ring before the last change)"
		}
		return s
	}
	return ""
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
	// MaxSiblings bounds the live siblings a write this coordinator mints
	// may leave on a key (see Put); 0 means no bound. Merges of versions
	// other nodes minted are never bounded.
	MaxSiblings int
}

// Deps are the coordinator's collaborators. Store and Transport are
// required; the rest may be nil (no hints kept, every node usable, repairs
// sent inline, no metrics).
type Deps struct {
	Store Store
	// Replan returns the plan for the same key under this node's newest
	// ring, and false when the ring has not changed since plan was made;
	// nil means rings never change. A write asks it after storing locally,
	// so a write planned just before a ring change also reaches the
	// replicas the new ring names.
	Replan    func(plan Plan) (Plan, bool)
	Transport Transport
	Hints     HintStore
	Health    *Health
	Pipeline  *Pipeline
	Metrics   *Metrics
}

// Coordinator runs quorum reads and writes for keys this node replicates.
// It is safe for concurrent use.
type Coordinator struct {
	cfg   CoordinatorConfig
	reads readLatency
	// calls counts replica requests still running, also those that go on
	// after the client was answered, so the node can wait for them (and
	// the hints they may keep) before it closes its store.
	calls sync.WaitGroup
	Deps
}

// Wait returns once every replica request started so far has finished;
// each is bounded by the coordinator's timeout.
func (c *Coordinator) Wait() { c.calls.Wait() }

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
// new version's context: what the client had seen plus the new write;
// siblings is how many live siblings this node's copy holds after it.
//
// The version is minted inside the local write's transaction, so writes to
// one key share group commits rather than queueing behind each other (a
// version minted outside it needs a per-key lock held through the commit:
// tried, and hot keys then waited in line for hundreds of milliseconds).
// The sibling limit is checked there too (see admit), so it is exact and a
// refused write stores nothing anywhere.
func (c *Coordinator) Put(ctx context.Context, plan Plan, key, value []byte, contentType string, clientCtx version.Clock) (clock version.Clock, siblings int, err error) {
	var dot version.Dot
	actor := c.cfg.Actor(plan.Partition) // outside the store's transaction: it may take locks
	obj, err := c.Store.Apply(plan.Partition, key, func(cur *version.Object) (*version.Object, error) {
		var next *version.Object
		next, dot = cur.Write(actor, clientCtx, value, contentType, c.cfg.Now())
		return next, c.admit(cur, next)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("replication: local write: %w", err)
	}
	if err := c.replicate(ctx, plan, key, obj); err != nil {
		return nil, 0, err
	}
	return clientCtx.With(dot), len(obj.Siblings), nil
}

// admit refuses, with ErrTooManySiblings, a write that would turn cur into
// next with more live siblings than MaxSiblings and more than cur holds. A
// write that supersedes a sibling (its context covers one, or it repeats
// one's value) never grows the set, so a client can always resolve, even a
// key that merges took past the limit. Only what this coordinator mints is
// admitted here: merges of what other nodes accepted are never refused, so
// nothing acknowledged is lost.
func (c *Coordinator) admit(cur, next *version.Object) error {
	limit := c.cfg.MaxSiblings
	if limit <= 0 || len(next.Siblings) <= limit {
		return nil
	}
	had := 0
	if cur != nil {
		had = len(cur.Siblings)
	}
	if len(next.Siblings) <= had {
		return nil
	}
	return fmt.Errorf("%w: the write would leave %d, the limit is %d", ErrTooManySiblings, len(next.Siblings), limit)
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
		return cur.Delete(clientCtx, c.cfg.Now()), nil
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
//
// The sibling limit applies as in Put, to the copy the hints make up.
func (c *Coordinator) PutAsStandIn(ctx context.Context, plan Plan, key, value []byte, contentType string, clientCtx version.Clock) (clock version.Clock, siblings int, err error) {
	if c.Hints == nil {
		return nil, 0, ErrNoReplicas
	}
	base, err := c.Hints.Hinted(plan.Partition, key)
	if err != nil {
		return nil, 0, err
	}
	obj, dot := base.Write(ephemeralActor(), clientCtx, value, contentType, c.cfg.Now())
	if err := c.admit(base, obj); err != nil {
		return nil, 0, err
	}
	if err := c.standInWrite(ctx, plan, key, obj); err != nil {
		return nil, 0, err
	}
	return clientCtx.With(dot), len(obj.Siblings), nil
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
	if err := c.standInWrite(ctx, plan, key, base.Delete(clientCtx, c.cfg.Now())); err != nil {
		return nil, err
	}
	return clientCtx, nil
}

// standInWrite keeps obj here as a hint for every replica, durably, then
// replicates it as the coordinator would.
func (c *Coordinator) standInWrite(ctx context.Context, plan Plan, key []byte, obj *version.Object) error {
	for _, id := range plan.Replicas {
		if err := c.Hints.AddHint(id, plan.Partition, key, obj, true); err != nil {
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

// Replicate stores obj, already merged into this node's copy, on the
// plan's other nodes, as a write does. A node that accepted a write
// planned with an older ring uses it to pass the write on to the replicas
// its newer ring names.
func (c *Coordinator) Replicate(ctx context.Context, plan Plan, key []byte, obj *version.Object) error {
	return c.replicate(ctx, plan, key, obj)
}

// replicate sends obj to the plan's other nodes and waits until they,
// with this node, which already stored it, make the plan's quorum. A
// replica that is down or fails has the write sent to the next stand-in as
// a hint naming it; with no stand-in left, this node keeps the hint
// itself, so the replica still catches up without a read. Stores still in
// flight when the quorum is reached go on in the background, bounded by
// the timeout. The ring is checked after the local store: a write planned
// just before the ring changed also goes to the new ring's replicas.
func (c *Coordinator) replicate(ctx context.Context, plan Plan, key []byte, obj *version.Object) error {
	if c.Replan != nil {
		if newer, changed := c.Replan(plan); changed {
			plan = plan.joined(newer)
		}
	}
	targets := c.othersOf(plan.targets())
	standIns := newStandIns(c.othersOf(plan.Fallbacks), c.Health)
	// A stand-in coordinating holds no replica's copy: until a replica
	// stores the write, hints may be its only copies.
	sole := !slices.Contains(plan.targets(), c.cfg.Self)
	results := c.fanOut(ctx, targets, func(ctx context.Context, id string) reply {
		return reply{id: id, err: c.storeOrHint(ctx, plan, key, obj, id, standIns, sole)}
	})
	acks := newTally(plan, len(targets))
	if !sole {
		acks.add(c.cfg.Self, true)
	} else {
		acks.got[0]++ // a stand-in coordinating: its hints count as one replica's copy
	}
	relax, stop := relaxAfter(ctx)
	defer stop()
	for !acks.met() {
		if acks.doomed() {
			return fmt.Errorf("%w: %s", ErrUnavailable, acks.shortfall("stored the write"))
		}
		select {
		case <-relax:
			acks.relaxed = true
		case r := <-results:
			acks.reply(r.id, r.err == nil)
			if errors.Is(r.err, ErrNotReplica) && !slices.Contains(plan.Replicas, r.id) {
				acks.retire(r.id)
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: %s in time", ErrUnavailable, acks.shortfall("stored the write"))
		}
	}
	return nil
}

// joined is the plan for a write that was planned with p's ring and is
// stored after the ring changed to newer's: the newer plan, with p's
// replicas among its previous lists.
func (p Plan) joined(newer Plan) Plan {
	lists := append(slices.Clone(newer.Previous), p.Previous...)
	lists = append(lists, p.Replicas)
	newer.Previous = nil
	for _, list := range lists {
		if slices.Equal(list, newer.Replicas) || slices.ContainsFunc(newer.Previous, func(l []string) bool { return slices.Equal(l, list) }) {
			continue
		}
		newer.Previous = append(newer.Previous, list)
	}
	newer.Quorum = p.Quorum
	return newer
}

// storeOrHint delivers obj for replica id: to id itself when it is usable,
// else (or when that fails) to a stand-in as a hint, else into this node's
// own hints. It returns nil only when another node durably holds obj; a
// hint kept here does not count towards the quorum, since this node's copy
// already did. sole marks the hints (Hint.Sole).
func (c *Coordinator) storeOrHint(ctx context.Context, plan Plan, key []byte, obj *version.Object, id string, standIns *standIns, sole bool) error {
	req := StoreRequest{Partition: plan.Partition, Key: key, Object: obj, RingVersion: plan.RingVersion}
	err := ErrUnreachable
	// A replica in back-off is skipped only when a stand-in can take its
	// place: the back-off steers writes, it must not refuse them.
	if c.Health.Usable(id) || !standIns.available() {
		attempt, cancel := c.attemptContext(ctx, standIns)
		start := time.Now()
		_, err = c.Transport.Store(attempt, id, req)
		cancel()
		c.Health.observe(id, err)
		c.Metrics.observeReplica(id, "store", start, err)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNotReplica) && !slices.Contains(plan.Replicas, id) {
			return err // a former replica that let the partition go
		}
	}
	if c.Hints == nil {
		return err
	}
	req.HintFor, req.Sole = id, sole
	for standIn, ok := standIns.next(); ok; standIn, ok = standIns.next() {
		start := time.Now()
		_, serr := c.Transport.Store(ctx, standIn, req)
		c.Health.observe(standIn, serr)
		c.Metrics.observeReplica(standIn, "store", start, serr)
		if serr == nil {
			c.Metrics.standIn("store")
			return nil
		}
	}
	if herr := c.Hints.AddHint(id, plan.Partition, key, obj, sole); herr != nil {
		return fmt.Errorf("%w; keeping a hint failed too: %v", err, herr)
	}
	return fmt.Errorf("%w (kept a hint for it here)", err)
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

// Get reads key from the plan's nodes (stand-ins in place of unusable ones,
// since they may hold hints) and returns the merge of the answers once they
// make the plan's quorum, nil when none had the key. It asks only as many
// nodes as the quorum needs, this one and usable ones first, and asks one
// more when one fails, or speculatively when the answers are slower than
// the recent p99 of replica reads (at most one extra request, so it never
// doubles the load); while data moves after a ring change it asks them
// all. Once every node asked has answered or the timeout passed, those whose
// copy lacks something the merge holds are sent the merge (read repair).
func (c *Coordinator) Get(ctx context.Context, plan Plan, key []byte) (*version.Object, error) {
	standIns := newStandIns(plan.Fallbacks, c.Health)
	targets := c.readOrder(plan)
	first := len(targets)
	if len(plan.Previous) == 0 {
		first = min(plan.Quorum, len(targets))
	}
	results, launch, done := c.fanOutLater(ctx, targets, first, func(ctx context.Context, id string) reply {
		if id == c.cfg.Self {
			obj, err := c.Store.Get(plan.Partition, key)
			return reply{id: id, from: id, obj: obj, err: err}
		}
		if c.Health.Usable(id) || !standIns.available() {
			start := time.Now()
			resp, err := c.Transport.Fetch(ctx, id, FetchRequest{Partition: plan.Partition, Key: key})
			c.Health.observe(id, err)
			c.Metrics.observeReplica(id, "fetch", start, err)
			if err == nil {
				c.reads.observe(time.Since(start))
				return reply{id: id, from: id, obj: resp.Object}
			}
		}
		for standIn, ok := standIns.next(); ok; standIn, ok = standIns.next() {
			start := time.Now()
			resp, err := c.Transport.Fetch(ctx, standIn, FetchRequest{Partition: plan.Partition, Key: key})
			c.Health.observe(standIn, err)
			c.Metrics.observeReplica(standIn, "fetch", start, err)
			if err == nil {
				c.Metrics.standIn("fetch")
				return reply{id: id, from: standIn, obj: resp.Object}
			}
		}
		return reply{id: id, err: ErrUnreachable}
	})
	var (
		merged   *version.Object
		answers  []reply
		received int
	)
	heard := newTally(plan, len(targets))
	relax, stop := relaxAfter(ctx)
	defer stop()
	speculate := time.NewTimer(c.reads.p99())
	defer speculate.Stop()
	speculated := false
	asked := first
	for !heard.met() {
		if heard.doomed() || received == asked {
			go done(received)
			return nil, fmt.Errorf("%w: %s", ErrUnavailable, heard.shortfall("answered the read"))
		}
		select {
		case <-relax:
			heard.relaxed = true
		case <-speculate.C:
			if !speculated && launch() {
				speculated = true
				asked++
				c.reads.speculated.Add(1)
			}
		case r := <-results:
			received++
			heard.reply(r.id, r.err == nil)
			if r.err == nil {
				answers = append(answers, r)
				merged = version.Merge(merged, r.obj)
			} else if launch() { // in place of the node that failed
				asked++
			}
		case <-ctx.Done():
			go done(received)
			return nil, fmt.Errorf("%w: %s in time", ErrUnavailable, heard.shortfall("answered the read"))
		}
	}
	go c.readRepair(plan, key, merged, answers, func() []reply { return done(received) })
	return merged, nil
}

// readOrder lists the plan's nodes in the order a read asks them: this
// node first (its copy costs no round trip), then the others in preference
// order, usable ones before those in back-off.
func (c *Coordinator) readOrder(plan Plan) []string {
	all := plan.targets()
	out := make([]string, 0, len(all))
	if slices.Contains(all, c.cfg.Self) {
		out = append(out, c.cfg.Self)
	}
	for _, usable := range []bool{true, false} {
		for _, id := range all {
			if id != c.cfg.Self && c.Health.Usable(id) == usable {
				out = append(out, id)
			}
		}
	}
	return out
}

// readRepair waits for the replies still due from the nodes asked, then
// sends the merge of all answers to every node whose copy lacked part of
// it. Stand-ins are not repaired: they hold hints, not copies.
func (c *Coordinator) readRepair(plan Plan, key []byte, merged *version.Object, answers []reply, late func() []reply) {
	for _, r := range late() {
		if r.err == nil {
			answers = append(answers, r)
			merged = version.Merge(merged, r.obj)
		}
	}
	if merged == nil {
		return
	}
	for _, r := range answers {
		if r.from != r.id || r.obj.Dominates(merged) {
			continue
		}
		repair := func(ctx context.Context) error {
			err := c.storeOn(ctx, r.id, plan, key, merged)
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

// storeOn merges obj into one node's copy, this node's included.
func (c *Coordinator) storeOn(ctx context.Context, id string, plan Plan, key []byte, obj *version.Object) error {
	if id == c.cfg.Self {
		_, err := c.Store.Apply(plan.Partition, key, func(cur *version.Object) (*version.Object, error) {
			return version.Merge(cur, obj), nil
		})
		return err
	}
	start := time.Now()
	_, err := c.Transport.Store(ctx, id, StoreRequest{Partition: plan.Partition, Key: key, Object: obj, RingVersion: plan.RingVersion})
	c.Health.observe(id, err)
	c.Metrics.observeReplica(id, "store", start, err)
	return err
}

// relaxAfter fires halfway to ctx's deadline (see tally).
func relaxAfter(ctx context.Context) (<-chan time.Time, func()) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(deadline) / 2)
	return t.C, func() { t.Stop() }
}

// reply is one node's answer to a fanned-out request: id is the node it
// counts for, from the node that gave it (a stand-in in id's place, or id).
type reply struct {
	id   string
	from string
	obj  *version.Object
	err  error
}

// fanOutLater is fanOut for the first `first` ids, with launch starting the
// next one (false when none is left). done, called once no more launches
// will be made, stops launching, waits for every launched call's reply
// beyond the `taken` already received, returns them and releases the calls'
// context; every reply goes to the channel until done is called.
func (c *Coordinator) fanOutLater(ctx context.Context, ids []string, first int, call func(context.Context, string) reply) (<-chan reply, func() bool, func(taken int) []reply) {
	results := make(chan reply, len(ids))
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	var (
		mu       sync.Mutex // guards launched and closed
		launched int
		closed   bool
	)
	launch := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if closed || launched == len(ids) {
			return false
		}
		id := ids[launched]
		launched++
		c.calls.Go(func() { results <- call(bg, id) })
		return true
	}
	for range first {
		launch()
	}
	done := func(taken int) []reply {
		mu.Lock()
		closed = true
		due := launched - taken
		mu.Unlock()
		var late []reply
		for ; due > 0; due-- {
			late = append(late, <-results) // bg's timeout bounds every call
		}
		cancel()
		return late
	}
	return results, launch, done
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
		c.calls.Add(1)
		wg.Go(func() {
			defer c.calls.Done()
			results <- call(bg, id)
		})
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
