package replication

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// ReplicaStore is what anti-entropy needs of the node's storage, beyond the
// coordinator's Store.
type ReplicaStore interface {
	Store
	// Count returns about how many keys partition holds.
	Count(partition int) (int, error)
	// Scan reads partition from one snapshot: begun (when not nil) is
	// called once the snapshot is taken and before the first key, then fn
	// for every key want accepts (nil: every key), in key order.
	Scan(partition int, want func(key []byte) bool, begun func(), fn func(key []byte, obj *version.Object) error) error
	// MergeAll merges each item into the stored copy of its key, in one
	// transaction, and returns how many keys changed.
	MergeAll(partition int, items []RangeItem) (int, error)
	// Purge deletes key for good if gone accepts its stored object,
	// reporting whether it did.
	Purge(partition int, key []byte, gone func(cur *version.Object) bool) (bool, error)
}

// AntiEntropyConfig configures anti-entropy.
type AntiEntropyConfig struct {
	// Interval is the time between rounds; each round compares every
	// partition this node replicates with each of its other replicas.
	Interval time.Duration
	// Grace is how long a tombstone is kept after every replica had it.
	Grace time.Duration
	// Replicas returns the partitions this node replicates now, each with
	// its other replicas; ok is false while the ring is changing (data is
	// moving, and partition handoff does the work then).
	Replicas func() (partitions map[int][]string, ok bool)
	Now      func() time.Time
	Logger   *slog.Logger
	// PageBytes is how much data one page of a repair asks for; zero
	// means 256 KiB.
	PageBytes int
}

// AntiEntropy makes replicas converge when hints cannot (paper §4.7): for
// each partition, it compares this node's Merkle tree with each other
// replica's, descending only into differing branches, then pulls the
// peer's copies of the keys in the differing buckets, merges them by
// causality, and pushes back what the peer lacks. Exchanges run one at a
// time through the background pipeline, so they are rate-limited and back
// off under client load.
//
// It also purges tombstones: a tombstone goes once every other replica of
// its partition completed an exchange with this node that began more than
// the grace period after the deletion, so every replica has had it for the
// grace period and none can bring the deleted value back.
type AntiEntropy struct {
	cfg       AntiEntropyConfig
	store     ReplicaStore
	trees     *Trees
	transport Transport
	health    *Health
	pipeline  *Pipeline
	metrics   *aeMetrics

	mu sync.Mutex // guards the fields below
	// synced is, per partition and peer, when the last exchange that
	// completed began: the peer then had everything this node had.
	synced map[int]map[string]time.Time
	// lateTombstone is, per partition, when a tombstone last arrived
	// here already older than the grace period: exchanges before it do not
	// show that the peers have it.
	lateTombstone map[int]time.Time
	// purged is, per partition, the sync time of the last purge scan.
	purged map[int]time.Time
}

// maxPushKeys bounds how many keys one exchange pushes; a replica missing
// more (a wiped one) pulls them itself, a page at a time.
const maxPushKeys = 4096

// NewAntiEntropy builds the loop; Run starts it. health, pipeline and reg
// may be nil.
func NewAntiEntropy(cfg AntiEntropyConfig, store ReplicaStore, trees *Trees, transport Transport, health *Health, pipeline *Pipeline, reg prometheus.Registerer) *AntiEntropy {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PageBytes <= 0 {
		cfg.PageBytes = 256 << 10
	}
	a := &AntiEntropy{
		cfg: cfg, store: store, trees: trees, transport: transport, health: health, pipeline: pipeline,
		synced: map[int]map[string]time.Time{}, lateTombstone: map[int]time.Time{}, purged: map[int]time.Time{},
	}
	a.metrics = newAEMetrics(reg, a)
	return a
}

// Written reports a committed change of a key, for the trees and the
// tombstone bookkeeping; call it while holding Trees.Writing.
func (a *AntiEntropy) Written(partition int, key []byte, prev, next *version.Object) {
	if a == nil {
		return
	}
	a.trees.Set(partition, key, prev, next)
	if next != nil && !next.Live() && (prev == nil || prev.Live()) {
		if now := a.cfg.Now(); a.expired(next) {
			a.mu.Lock()
			a.lateTombstone[partition] = now
			a.mu.Unlock()
		}
	}
}

// Run runs a round every Interval until ctx is done.
func (a *AntiEntropy) Run(ctx context.Context) {
	ticker := time.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		a.Round(ctx)
	}
}

// Round compares every partition this node replicates with each of its
// other replicas, repairing what differs, then purges the tombstones that
// may go. It returns how many keys it repaired here and on the peers.
func (a *AntiEntropy) Round(ctx context.Context) int {
	parts, ok := a.cfg.Replicas()
	if !ok {
		return 0
	}
	a.forgetExcept(parts)
	repaired := 0
	for _, p := range sortedKeys(parts) {
		for _, peer := range parts[p] {
			if ctx.Err() != nil {
				return repaired
			}
			if a.health != nil && !a.health.Usable(peer) {
				continue
			}
			n, err := a.background(ctx, func(ctx context.Context) (int, error) { return a.Exchange(ctx, p, peer) })
			repaired += n
			if err != nil {
				a.cfg.Logger.Debug("anti-entropy exchange failed", "partition", p, "peer", peer, "err", err)
			}
		}
		if err := a.purge(p, parts[p]); err != nil {
			a.cfg.Logger.Warn("purging tombstones", "partition", p, "err", err)
		}
	}
	return repaired
}

// background runs task through the pipeline, when there is one, and waits
// for it.
func (a *AntiEntropy) background(ctx context.Context, task func(context.Context) (int, error)) (int, error) {
	if a.pipeline == nil {
		return task(ctx)
	}
	var (
		n    int
		err  error
		done = make(chan struct{})
	)
	if serr := a.pipeline.SubmitWait(ctx, "anti_entropy", func(ctx context.Context) error {
		defer close(done)
		n, err = task(ctx)
		return err
	}); serr != nil {
		return 0, serr
	}
	select {
	case <-done:
		return n, err
	case <-ctx.Done():
		return 0, ctx.Err() // the pipeline cancels the task as it closes
	}
}

// Exchange compares partition p with peer and repairs both sides, and
// returns how many keys changed on either side.
func (a *AntiEntropy) Exchange(ctx context.Context, p int, peer string) (int, error) {
	start := a.cfg.Now()
	tree, err := a.tree(p)
	if err != nil {
		return 0, err
	}
	diff, err := a.compare(ctx, tree, p, peer)
	if err != nil {
		a.metrics.exchange("error")
		return 0, err
	}
	if len(diff.Buckets) == 0 {
		a.metrics.exchange("in_sync")
		a.markSynced(p, peer, start)
		return 0, nil
	}
	pulled, theirs, err := a.pull(ctx, p, peer, diff)
	if err != nil {
		a.metrics.exchange("error")
		return pulled, err
	}
	pushed, complete, err := a.push(ctx, p, peer, diff, theirs)
	a.metrics.repaired.Add(float64(pulled + pushed))
	if err != nil {
		a.metrics.exchange("error")
		return pulled + pushed, err
	}
	a.metrics.exchange("repaired")
	if complete {
		a.markSynced(p, peer, start)
	}
	a.cfg.Logger.Debug("anti-entropy repaired a partition", "partition", p, "peer", peer, "pulled", pulled, "pushed", pushed)
	return pulled + pushed, nil
}

// tree returns p's tree, building it from storage the first time.
func (a *AntiEntropy) tree(p int) (*merkle.Tree, error) {
	if t := a.trees.Get(p); t != nil {
		return t, nil
	}
	keys, err := a.store.Count(p)
	if err != nil {
		return nil, err
	}
	return a.trees.Build(p, keys, func(begun func(), fn func([]byte, *version.Object) error) error {
		return a.store.Scan(p, nil, begun, fn)
	})
}

// compare descends the two trees and returns the buckets that differ.
func (a *AntiEntropy) compare(ctx context.Context, tree *merkle.Tree, p int, peer string) (merkle.Diff, error) {
	m := tree.Start()
	for {
		a.metrics.bytes.Add(float64(messageSize(m)))
		resp, err := a.transport.Exchange(ctx, peer, ExchangeRequest{Partition: p, Message: m})
		if err != nil {
			return merkle.Diff{}, err
		}
		a.metrics.bytes.Add(float64(messageSize(resp.Message)))
		if resp.Message.Done {
			return resp.Message.Diff(), nil
		}
		if m, err = tree.Reply(resp.Message); err != nil {
			return merkle.Diff{}, err
		}
		if m.Done {
			return m.Diff(), nil
		}
	}
}

// pull merges the peer's copies of the keys in the differing buckets into
// this node's, and returns how many keys changed here and the digests of
// the peer's copies.
func (a *AntiEntropy) pull(ctx context.Context, p int, peer string, diff merkle.Diff) (int, map[string]merkle.Digest, error) {
	theirs := map[string]merkle.Digest{}
	changed := 0
	var after []byte
	for {
		page, err := a.transport.Range(ctx, peer, RangeRequest{Partition: p, After: after, MaxBytes: a.cfg.PageBytes, Buckets: &diff})
		if err != nil {
			return changed, nil, err
		}
		for _, it := range page.Items {
			theirs[string(it.Key)] = digest(it.Object)
			a.metrics.bytes.Add(float64(len(it.Key)) + float64(objectSize(it.Object)))
		}
		items, err := a.withoutExpired(p, page.Items)
		if err != nil {
			return changed, nil, err
		}
		n, err := a.store.MergeAll(p, items)
		if err != nil {
			return changed, nil, err
		}
		changed += n
		if page.Next == nil {
			return changed, theirs, nil
		}
		after = page.Next
	}
}

// push sends the peer this node's copy of every key in the differing
// buckets that the peer's copy (as pulled) does not equal. complete is
// false when it stopped at maxPushKeys.
func (a *AntiEntropy) push(ctx context.Context, p int, peer string, diff merkle.Diff, theirs map[string]merkle.Digest) (pushed int, complete bool, err error) {
	var items []RangeItem
	complete = true
	err = a.store.Scan(p, diff.Contains, nil, func(key []byte, obj *version.Object) error {
		peer, held := theirs[string(key)]
		if peer == obj.Digest() || (!held && a.expired(obj)) {
			return nil // in sync, or a tombstone the peer already purged
		}
		if len(items) == maxPushKeys {
			complete = false
			return errStopScan
		}
		items = append(items, RangeItem{Key: slices.Clone(key), Object: obj})
		return nil
	})
	if err != nil && err != errStopScan {
		return 0, false, err
	}
	for _, it := range items {
		if _, err := a.transport.Store(ctx, peer, StoreRequest{Partition: p, Key: it.Key, Object: it.Object}); err != nil {
			return pushed, false, fmt.Errorf("pushing a repair to %s: %w", peer, err)
		}
		a.metrics.bytes.Add(float64(len(it.Key)) + float64(objectSize(it.Object)))
		pushed++
	}
	return pushed, complete, nil
}

// expired reports whether obj is a tombstone past the grace period: one a
// replica that holds nothing for the key has purged, or need not take.
func (a *AntiEntropy) expired(obj *version.Object) bool {
	return obj != nil && !obj.Live() && time.Unix(0, obj.Deleted).Add(a.cfg.Grace).Before(a.cfg.Now())
}

// withoutExpired leaves out of a pulled page the expired tombstones of keys
// this node holds nothing for: it purged them already (or never had a
// value to delete), so taking them back would only start purging again.
func (a *AntiEntropy) withoutExpired(p int, items []RangeItem) ([]RangeItem, error) {
	out := items[:0:0]
	for _, it := range items {
		if a.expired(it.Object) {
			cur, err := a.store.Get(p, it.Key)
			if err != nil {
				return nil, err
			}
			if cur == nil {
				continue
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// HandleExchange answers one message of an exchange another replica runs
// with this node.
func (a *AntiEntropy) HandleExchange(req ExchangeRequest) (ExchangeResponse, error) {
	tree, err := a.tree(req.Partition)
	if err != nil {
		return ExchangeResponse{}, err
	}
	m, err := tree.Reply(req.Message)
	if err != nil {
		return ExchangeResponse{}, fmt.Errorf("replication: exchange of partition %d: %w", req.Partition, err)
	}
	return ExchangeResponse{Message: m}, nil
}

func (a *AntiEntropy) markSynced(p int, peer string, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.synced[p] == nil {
		a.synced[p] = map[string]time.Time{}
	}
	a.synced[p][peer] = at
}

// forgetExcept drops what is known of partitions and peers that are no
// longer this node's fellow replicas, and the trees of partitions it no
// longer replicates.
func (a *AntiEntropy) forgetExcept(parts map[int][]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p, peers := range a.synced {
		for peer := range peers {
			if !slices.Contains(parts[p], peer) {
				delete(peers, peer)
			}
		}
		if _, ok := parts[p]; !ok {
			delete(a.synced, p)
			delete(a.purged, p)
			a.trees.Drop(p)
		}
	}
}

// syncedSince returns the time since which every peer is known to hold
// everything this node held, and false when some peer never synced. With
// no peers, that is now.
func (a *AntiEntropy) syncedSince(p int, peers []string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	oldest := a.cfg.Now()
	for _, peer := range peers {
		at, ok := a.synced[p][peer]
		if !ok {
			return time.Time{}, false
		}
		if at.Before(oldest) {
			oldest = at
		}
	}
	return oldest, true
}

// purgeableSince is syncedSince, unless a tombstone arrived late since
// then: the exchanges before it do not show that the peers have it.
func (a *AntiEntropy) purgeableSince(p int, peers []string) (time.Time, bool) {
	since, ok := a.syncedSince(p, peers)
	a.mu.Lock()
	late := a.lateTombstone[p]
	a.mu.Unlock()
	if !ok || (!late.IsZero() && !late.Before(since)) {
		return time.Time{}, false
	}
	return since, true
}

// purge deletes p's tombstones that every replica has had for the grace
// period. It scans the partition at most once per sync time that moved on
// by the grace period (or the interval, when longer).
func (a *AntiEntropy) purge(p int, peers []string) error {
	since, ok := a.purgeableSince(p, peers)
	if !ok {
		return nil
	}
	a.mu.Lock()
	last := a.purged[p]
	a.mu.Unlock()
	if !last.IsZero() && since.Sub(last) < max(a.cfg.Grace, a.cfg.Interval) {
		return nil
	}
	cutoff := since.Add(-a.cfg.Grace).UnixNano()
	gone := func(o *version.Object) bool { return o != nil && !o.Live() && o.Deleted < cutoff }
	var keys [][]byte
	err := a.store.Scan(p, nil, nil, func(key []byte, obj *version.Object) error {
		if gone(obj) {
			keys = append(keys, slices.Clone(key))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range keys {
		ok, err := a.store.Purge(p, key, gone)
		if err != nil {
			return err
		}
		if ok {
			a.metrics.purged.Inc()
		}
	}
	a.mu.Lock()
	a.purged[p] = since
	a.mu.Unlock()
	return nil
}

func messageSize(m merkle.Message) int { return 8*len(m.Hashes) + 4*len(m.Nodes) + 8 }

func objectSize(o *version.Object) int {
	if o == nil {
		return 1
	}
	n := 16 * len(o.Clock)
	for _, s := range o.Siblings {
		n += len(s.Value) + len(s.ContentType) + 24
	}
	return n
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// aeMetrics are anti-entropy's collectors.
type aeMetrics struct {
	a         *AntiEntropy
	exchanges *prometheus.CounterVec
	repaired  prometheus.Counter
	bytes     prometheus.Counter
	purged    prometheus.Counter
}

var syncAgeDesc = prometheus.NewDesc("dynamo_antientropy_sync_age_seconds",
	"Seconds since the partition was last found in sync with every other replica (absent until it first was).", []string{"partition"}, nil)

func newAEMetrics(reg prometheus.Registerer, a *AntiEntropy) *aeMetrics {
	m := &aeMetrics{
		a: a,
		exchanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_antientropy_exchanges_total",
			Help: "Merkle tree exchanges this node ran, by outcome (in_sync, repaired, error).",
		}, []string{"outcome"}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_antientropy_keys_repaired_total",
			Help: "Keys anti-entropy changed, here (pulled) or on a peer (pushed).",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_antientropy_bytes_total",
			Help: "Bytes of tree hashes and key data anti-entropy exchanges sent and received (approximate).",
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_tombstones_purged_total",
			Help: "Tombstones deleted for good after every replica had them for the grace period.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.exchanges, m.repaired, m.bytes, m.purged, m)
	}
	return m
}

func (m *aeMetrics) exchange(outcome string) { m.exchanges.WithLabelValues(outcome).Inc() }

// Describe and Collect report each partition's sync age at scrape time.
func (m *aeMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- syncAgeDesc }

func (m *aeMetrics) Collect(ch chan<- prometheus.Metric) {
	parts, ok := m.a.cfg.Replicas()
	if !ok {
		return
	}
	now := m.a.cfg.Now()
	for p, peers := range parts {
		if since, ok := m.a.syncedSince(p, peers); ok {
			ch <- prometheus.MustNewConstMetric(syncAgeDesc, prometheus.GaugeValue, now.Sub(since).Seconds(), strconv.Itoa(p))
		}
	}
}
