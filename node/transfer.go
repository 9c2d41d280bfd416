package node

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
	"github.com/dynamo-kv/dynamo/ring"
)

const (
	metaTransfers = "transfers"
	// maxRetainedRings bounds the rings kept while data catches up with
	// a run of membership changes.
	maxRetainedRings = 8
	// pageBytes is how much partition data one Range request asks for.
	pageBytes = 256 << 10
)

// mover makes data follow the ring. When the ring changes, every partition
// this node newly replicates is pulled, page by page and throttled, from
// the nodes that held it under the rings retained since the cluster was
// last in sync; progress is persisted after each page, so a pull resumes
// after a restart of either side. Until every live member reports that it
// works to the current ring with nothing left to pull, coordinators still
// read from and write to the old holders (the plan's extras), and nothing
// is dropped; then old holders drop the partitions they no longer
// replicate.
type mover struct {
	n    *Node
	wake chan struct{}

	persistMu sync.Mutex // orders writes of the persisted state

	paceMu   sync.Mutex // guards paceNext
	paceNext time.Time  // when the next page of partition data may be taken

	mu         sync.Mutex // guards the fields below
	rings      []*ring.Ring
	pending    map[int]*pull
	bytesMoved int64
	leaving    bool
	// droppedFor is the ring version whose unreplicated partitions were
	// last dropped.
	droppedFor uint64
}

// pull is the progress of receiving one partition.
type pull struct {
	// Source is the node being streamed from, After the last key received.
	Source string `json:"s,omitempty"`
	After  []byte `json:"a,omitempty"`
	// Incomplete is set when a page of the pass from Source was served
	// incomplete: the pass may then lack versions, even if its last page
	// was complete.
	Incomplete bool `json:"i,omitempty"`
	// Tried are sources fully streamed that were themselves incomplete,
	// in this round; Rounds counts rounds in which every usable source was.
	Tried  []string `json:"t,omitempty"`
	Rounds int      `json:"r,omitempty"`
}

// maxIncompleteRounds is how many times a partition is streamed from
// sources that are all still receiving it themselves before it is taken as
// complete: by then they have merged each other's data, and nobody holds
// more.
const maxIncompleteRounds = 10

// moverState is what the data dir remembers of the mover.
type moverState struct {
	Rings      [][]string    `json:"rings"`
	Pending    map[int]*pull `json:"pending"`
	BytesMoved int64         `json:"bytes_moved"`
}

func newMover(n *Node) *mover {
	return &mover{n: n, wake: make(chan struct{}, 1), pending: map[int]*pull{}}
}

// load restores the persisted state.
func (m *mover) load() error {
	raw, err := m.n.db.GetMeta(metaTransfers)
	if err != nil || raw == nil {
		return err
	}
	var st moverState
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, members := range st.Rings {
		r, err := ring.New(m.n.cfg.Partitions, members, m.n.cfg.N)
		if err != nil {
			return err
		}
		m.rings = append(m.rings, r)
	}
	if st.Pending != nil {
		m.pending = st.Pending
	}
	m.bytesMoved = st.BytesMoved
	return nil
}

// persist writes the state to the data dir. It must be called without
// m.mu held: the request path takes m.mu, and must not wait for an fsync.
// persistMu orders the writes, so the last one holds the newest state.
func (m *mover) persist() {
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	m.mu.Lock()
	st := moverState{Pending: m.pending, BytesMoved: m.bytesMoved}
	for _, r := range m.rings {
		st.Rings = append(st.Rings, r.Members())
	}
	raw, _ := json.Marshal(st)
	m.mu.Unlock()
	if err := m.n.db.PutMeta(metaTransfers, raw); err != nil {
		m.n.logger.Error("cannot persist transfer progress", "err", err)
	}
}

func (m *mover) wakeUp() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// replicaN is the effective N for a ring.
func (m *mover) replicaN(r *ring.Ring) int { return min(m.n.cfg.N, len(r.Members())) }

// onRing records a new ring: partitions this node replicates now but did
// not under the previous ring are to be pulled.
func (m *mover) onRing(r *ring.Ring) {
	if m.recordRing(r) {
		m.persist()
		m.wakeUp()
	}
}

// recordRing updates rings and pending for r and reports whether anything
// changed.
func (m *mover) recordRing(r *ring.Ring) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	var prev *ring.Ring
	if len(m.rings) > 0 {
		prev = m.rings[len(m.rings)-1]
		if prev.Version() == r.Version() && slices.Equal(prev.Members(), r.Members()) {
			return false
		}
	}
	if prev == nil && len(m.n.cfg.Join) > 0 {
		// The first ring of a node that joins: the others worked to the
		// ring of the members without it. Keeping that ring makes this
		// node's quorums joint too, so it reads where data was acked.
		if before := m.ringWithout(r, m.n.cfg.ID); before != nil {
			m.rings = append(m.rings, before)
			prev = before
		}
	}
	m.rings = append(m.rings, r)
	if len(m.rings) > maxRetainedRings {
		m.rings = m.rings[len(m.rings)-maxRetainedRings:]
	}
	if prev == nil {
		// The first ring of a node that founded its cluster (or joined
		// nobody): there is nothing to receive.
		prev = r
	}
	self := m.n.cfg.ID
	added := 0
	for p := range r.Partitions() {
		now := slices.Contains(r.PreferenceList(p, m.replicaN(r)), self)
		before := prev != nil && slices.Contains(prev.PreferenceList(p, m.replicaN(prev)), self)
		switch {
		case !now:
			delete(m.pending, p)
		case !before && m.pending[p] == nil:
			m.pending[p] = &pull{}
			added++
		case m.pending[p] != nil:
			// Holders changed with the ring: incomplete ones may be done.
			m.pending[p].Tried, m.pending[p].Rounds = nil, 0
		}
	}
	if added > 0 {
		m.n.logger.Info("partitions to receive after ring change", "added", added, "pending", len(m.pending))
	}
	return true
}

// ringWithout is r without member id, nil when nobody would be left.
func (m *mover) ringWithout(r *ring.Ring, id string) *ring.Ring {
	members := slices.DeleteFunc(slices.Clone(r.Members()), func(m string) bool { return m == id })
	if len(members) == 0 {
		return nil
	}
	before, err := ring.New(m.n.cfg.Partitions, members, m.n.cfg.N)
	if err != nil {
		return nil
	}
	return before
}

// steady reports whether data is in place for the current ring: nothing
// to receive, and no older ring retained.
func (m *mover) steady() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rings) == 1 && len(m.pending) == 0
}

// isPending reports whether this node is still receiving partition p.
func (m *mover) isPending(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pending[p] != nil
}

// previous returns p's replica lists under the rings retained since data
// was last in place everywhere, other than replicas (the current one):
// the older lists of a plan's joint quorum. The oldest retained ring is
// one whose replicas held all of the data.
func (m *mover) previous(p int, replicas []string) [][]string {
	states := m.n.states.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.n.ring.Load(); len(m.rings) == 1 && cur != nil && m.rings[0].Version() == cur.Version() {
		return nil // in place: the common case, on every request
	}
	var out [][]string
	for _, r := range m.rings {
		list := r.PreferenceList(p, m.replicaN(r))
		if states != nil {
			// Departed members neither answer nor hold anything any more.
			list = slices.DeleteFunc(list, func(id string) bool { return (*states)[id] == StateLeft })
		}
		if len(list) == 0 || slices.Equal(list, replicas) || slices.ContainsFunc(out, func(l []string) bool { return slices.Equal(l, list) }) {
			continue
		}
		out = append(out, list)
	}
	return out
}

// holds reports whether this node replicates partition p under any ring
// it retains: whether a copy of p belongs here at all.
func (m *mover) holds(p int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rings {
		if slices.Contains(r.PreferenceList(p, m.replicaN(r)), m.n.cfg.ID) {
			return true
		}
	}
	return false
}

// progress is what this node publishes.
func (m *mover) progress() Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := Progress{Pending: len(m.pending), BytesMoved: m.bytesMoved, Leaving: m.leaving}
	if len(m.rings) > 0 {
		r := m.rings[len(m.rings)-1]
		p.RingVersion = r.Version()
		p.Owned = len(r.Owned(m.n.cfg.ID))
	}
	return p
}

// run pulls pending partitions and watches for the cluster to be in sync,
// until ctx is done.
func (m *mover) run(ctx context.Context) {
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		m.n.membership.Publish(m.n.progress())
		m.pullAll(ctx)
		m.n.membership.Publish(m.n.progress())
		m.settle()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-m.wake:
		}
	}
}

// pullWorkers is how many partitions are pulled at once, so that one slow
// or hung source does not hold up the rest.
const pullWorkers = 4

// pullAll makes one attempt at every pending partition.
func (m *mover) pullAll(ctx context.Context) {
	parts := make(chan int)
	var wg sync.WaitGroup
	for range pullWorkers {
		wg.Go(func() {
			for p := range parts {
				m.pullPartition(ctx, p)
			}
		})
	}
	for _, p := range m.pendingList() {
		if ctx.Err() != nil {
			break
		}
		parts <- p
	}
	close(parts)
	wg.Wait()
}

func (m *mover) pendingList() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, 0, len(m.pending))
	for p := range m.pending {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// sources lists the nodes that may hold partition p, current replicas
// first: usable ones to stream from, and whether any candidate exists at
// all (down ones included).
func (m *mover) sources(p int) (usable []string, any bool) {
	m.mu.Lock()
	rings := slices.Clone(m.rings)
	m.mu.Unlock()
	var candidates []string
	for i := len(rings) - 1; i >= 0; i-- {
		for _, id := range rings[i].PreferenceList(p, m.replicaN(rings[i])) {
			if id != m.n.cfg.ID && !slices.Contains(candidates, id) {
				candidates = append(candidates, id)
			}
		}
	}
	states := m.n.states.Load()
	for _, id := range candidates {
		if states != nil && (*states)[id] == StateLeft {
			continue // removed for good: nothing to wait for
		}
		any = true
		if m.n.health.Usable(id) {
			usable = append(usable, id)
		}
	}
	return usable, any
}

// pullPartition streams partition p from its sources until one that was
// complete has been read to the end, or every candidate was tried.
func (m *mover) pullPartition(ctx context.Context, p int) {
	for {
		m.mu.Lock()
		st := m.pending[p]
		if st == nil {
			m.mu.Unlock()
			return
		}
		cur := *st
		m.mu.Unlock()

		usable, any := m.sources(p)
		if !any {
			m.complete(p, "no other holder")
			return
		}
		usable = slices.DeleteFunc(usable, func(id string) bool { return slices.Contains(cur.Tried, id) })
		if len(usable) == 0 {
			if len(cur.Tried) == 0 {
				return // holders are down: try again later
			}
			// Every reachable holder was itself incomplete: try them all
			// again next time, when they may have finished.
			cur.Tried, cur.Rounds = nil, cur.Rounds+1
			if cur.Rounds >= maxIncompleteRounds {
				m.complete(p, "every holder incomplete")
				return
			}
			m.save(p, cur)
			return
		}
		if !slices.Contains(usable, cur.Source) {
			cur.Source, cur.After, cur.Incomplete = usable[0], nil, false
		}
		done, incomplete, err := m.stream(ctx, p, &cur)
		if err != nil {
			m.n.health.Failed(cur.Source)
			m.n.logger.Debug("partition pull interrupted", "partition", p, "source", cur.Source, "err", err)
			return
		}
		if !done {
			return
		}
		if !incomplete {
			m.complete(p, cur.Source)
			return
		}
		cur.Tried = append(cur.Tried, cur.Source)
		cur.Source, cur.After, cur.Incomplete = "", nil, false
		m.save(p, cur)
	}
}

// stream copies pages of p from cur.Source, merging each key by causality
// (a page in one transaction) and saving progress after every page. done is true at the partition's
// end; incomplete tells whether any page of the pass was served incomplete.
func (m *mover) stream(ctx context.Context, p int, cur *pull) (done, incomplete bool, err error) {
	for ctx.Err() == nil {
		pageCtx, cancel := context.WithTimeout(ctx, m.n.cfg.RequestTimeout)
		req := replication.RangeRequest{Partition: p, After: cur.After, MaxBytes: pageBytes, RingVersion: m.ringVersion()}
		resp, err := m.n.transport.Range(pageCtx, cur.Source, req)
		cancel()
		if err != nil {
			return false, false, err
		}
		cur.Incomplete = cur.Incomplete || resp.Incomplete
		if _, err := m.n.objects.MergeAll(p, resp.Items); err != nil {
			return false, false, err
		}
		var page int64
		for _, it := range resp.Items {
			page += int64(len(it.Key)) + objectSize(it.Object)
			cur.After = it.Key
		}
		m.n.metrics.transferBytes.Add(float64(page))
		m.mu.Lock()
		m.bytesMoved += page
		m.mu.Unlock()
		if len(resp.Items) > 0 && resp.Next != nil {
			m.save(p, *cur) // resume here after a restart
		}
		if err := m.throttle(ctx, page); err != nil {
			return false, false, err
		}
		if resp.Next == nil {
			return true, cur.Incomplete, nil
		}
		cur.After = resp.Next
	}
	return false, false, ctx.Err()
}

// throttle paces this node's whole intake of partition data (every pull
// worker, every partition) to the configured rate: each page books its
// bytes on one shared schedule and waits for its slot.
func (m *mover) throttle(ctx context.Context, bytes int64) error {
	rate := m.n.cfg.HandoffBytesPerSecond
	if rate <= 0 || bytes <= 0 {
		return nil
	}
	m.paceMu.Lock()
	slot := time.Now()
	if m.paceNext.After(slot) {
		slot = m.paceNext
	}
	m.paceNext = slot.Add(time.Duration(float64(bytes) / float64(rate) * float64(time.Second)))
	m.paceMu.Unlock()
	wait := time.Until(slot)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func objectSize(o *version.Object) int64 {
	var n int64
	if o != nil {
		for _, s := range o.Siblings {
			n += int64(len(s.Value) + len(s.ContentType) + 24)
		}
		n += int64(len(o.Clock) * 16)
	}
	return n
}

func (m *mover) save(p int, cur pull) {
	m.mu.Lock()
	if m.pending[p] == nil {
		m.mu.Unlock()
		return // no longer ours
	}
	m.pending[p] = &cur
	m.mu.Unlock()
	m.persist()
}

func (m *mover) complete(p int, from string) {
	m.mu.Lock()
	delete(m.pending, p)
	left := len(m.pending)
	m.mu.Unlock()
	m.persist()
	m.n.metrics.transfers.Inc()
	m.n.logger.Debug("partition received", "partition", p, "from", from, "pending", left)
	if left == 0 {
		m.n.logger.Info("all partitions received")
	}
}

// settle checks whether every live member works to this node's ring with
// nothing left to pull. Then older rings are forgotten and partitions this
// node no longer replicates are dropped, giving their space back.
func (m *mover) settle() {
	version, ok := m.syncedAt()
	if !ok {
		return
	}
	m.mu.Lock()
	current := m.rings[len(m.rings)-1]
	if current.Version() != version || len(m.pending) > 0 || (len(m.rings) == 1 && m.droppedFor == version) {
		m.mu.Unlock() // the ring moved on since the check, or nothing to do
		return
	}
	m.rings = []*ring.Ring{current}
	m.mu.Unlock()
	m.persist()
	keep := map[uint32]bool{}
	for _, p := range current.Replicas(m.n.cfg.ID, m.replicaN(current)) {
		keep[uint32(p)] = true
	}
	held, err := m.n.db.Partitions()
	if err != nil {
		m.n.logger.Error("cannot list partitions", "err", err)
		return
	}
	dropped := 0
	for _, p := range held {
		if keep[p] {
			continue
		}
		if m.ringVersion() != version {
			return // a newer ring arrived: the next settle decides
		}
		if err := m.n.retirePartition(int(p)); err != nil {
			m.n.logger.Error("cannot drop partition", "partition", p, "err", err)
			continue
		}
		dropped++
	}
	m.mu.Lock()
	m.droppedFor = version
	m.mu.Unlock()
	if dropped > 0 {
		m.n.logger.Info("dropped partitions this node no longer replicates", "dropped", dropped)
	}
}

// ringVersion is the version of the newest ring.
func (m *mover) ringVersion() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rings) == 0 {
		return 0
	}
	return m.rings[len(m.rings)-1].Version()
}

// synced reports whether every live member (this one included) works to
// this node's current ring and has nothing left to pull.
func (m *mover) synced() bool {
	_, ok := m.syncedAt()
	return ok
}

// syncedAt is synced, also returning the ring version it checked.
func (m *mover) syncedAt() (uint64, bool) {
	m.mu.Lock()
	if len(m.rings) == 0 {
		m.mu.Unlock()
		return 0, false
	}
	version := m.rings[len(m.rings)-1].Version()
	pending := len(m.pending)
	m.mu.Unlock()
	if pending > 0 {
		return 0, false
	}
	for _, mem := range m.n.membership.Members() {
		if mem.ID == m.n.cfg.ID || mem.State == StateDead || mem.State == StateLeft {
			continue // a dead member pulls from the current replicas when back
		}
		if mem.RingVersion != version || mem.Pending != 0 {
			return 0, false
		}
	}
	return version, true
}
