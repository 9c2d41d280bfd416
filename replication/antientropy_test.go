package replication_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/simnet"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// memReplica is one replica for anti-entropy tests: an in-memory store, its
// trees and its anti-entropy, serving peers over a simnet.
type memReplica struct {
	id    string
	ae    *replication.AntiEntropy
	trees *replication.Trees
	reg   *prometheus.Registry

	mu   sync.Mutex // guards data
	data map[int]map[string]*version.Object
}

func newMemReplica(net *simnet.Network, id string, now func() time.Time, grace time.Duration, peers map[int][]string) *memReplica {
	r := &memReplica{id: id, trees: replication.NewTrees(), reg: prometheus.NewRegistry(), data: map[int]map[string]*version.Object{}}
	cfg := replication.AntiEntropyConfig{
		Interval:  time.Hour, // rounds are run by hand
		Grace:     grace,
		Replicas:  func() (map[int][]string, bool) { return peers, true },
		Now:       now,
		PageBytes: 64 << 10,
	}
	r.ae = replication.NewAntiEntropy(cfg, r, r.trees, net.Transport(id), nil, nil, r.reg)
	net.Register(id, r)
	return r
}

// put writes objects straight into the store, as committed writes.
func (r *memReplica) put(p int, objs map[string]*version.Object) {
	items := make([]replication.RangeItem, 0, len(objs))
	for k, o := range objs {
		items = append(items, replication.RangeItem{Key: []byte(k), Object: o})
	}
	if _, err := r.MergeAll(p, items); err != nil {
		panic(err)
	}
}

func (r *memReplica) get(p int, key string) *version.Object {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.data[p][key]
}

func (r *memReplica) Get(p int, key []byte) (*version.Object, error) {
	return r.get(p, string(key)), nil
}

func (r *memReplica) Apply(p int, key []byte, fn func(*version.Object) (*version.Object, error)) (*version.Object, error) {
	defer r.trees.Writing()()
	r.mu.Lock()
	prev := r.data[p][string(key)]
	next, err := fn(prev)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	if r.data[p] == nil {
		r.data[p] = map[string]*version.Object{}
	}
	r.data[p][string(key)] = next
	r.mu.Unlock()
	r.ae.Written(p, key, prev, next)
	return next, nil
}

func (r *memReplica) MergeAll(p int, items []replication.RangeItem) (int, error) {
	changed := 0
	for _, it := range items {
		var before *version.Object
		after, _ := r.Apply(p, it.Key, func(cur *version.Object) (*version.Object, error) {
			before = cur
			return version.Merge(cur, it.Object), nil
		})
		if !after.Equal(before) {
			changed++
		}
	}
	return changed, nil
}

func (r *memReplica) Purge(p int, key []byte, gone func(*version.Object) bool) (bool, error) {
	defer r.trees.Writing()()
	r.mu.Lock()
	prev := r.data[p][string(key)]
	if prev == nil || !gone(prev) {
		r.mu.Unlock()
		return false, nil
	}
	delete(r.data[p], string(key))
	r.mu.Unlock()
	r.ae.Written(p, key, prev, nil)
	return true, nil
}

func (r *memReplica) Count(p int) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data[p]), nil
}

func (r *memReplica) Scan(p int, want func([]byte) bool, begun func(), fn func([]byte, *version.Object) error) error {
	r.mu.Lock()
	keys := make([]string, 0, len(r.data[p]))
	snapshot := make(map[string]*version.Object, len(r.data[p]))
	for k, o := range r.data[p] {
		keys = append(keys, k)
		snapshot[k] = o
	}
	if begun != nil {
		begun()
	}
	r.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if want != nil && !want([]byte(k)) {
			continue
		}
		if err := fn([]byte(k), snapshot[k]); err != nil {
			return err
		}
	}
	return nil
}

// The peer side of the protocol.

func (r *memReplica) HandleFetch(_ context.Context, _ string, req replication.FetchRequest) (replication.FetchResponse, error) {
	return replication.FetchResponse{Object: r.get(req.Partition, string(req.Key))}, nil
}

func (r *memReplica) HandleStore(_ context.Context, _ string, req replication.StoreRequest) (replication.StoreResponse, error) {
	_, err := r.MergeAll(req.Partition, []replication.RangeItem{{Key: req.Key, Object: req.Object}})
	return replication.StoreResponse{}, err
}

func (r *memReplica) HandleCoordinate(context.Context, string, replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	return replication.CoordinateResponse{}, replication.ErrNotReplica
}

func (r *memReplica) HandleRange(_ context.Context, _ string, req replication.RangeRequest) (replication.RangeResponse, error) {
	var resp replication.RangeResponse
	size := 0
	err := r.Scan(req.Partition, nil, nil, func(key []byte, obj *version.Object) error {
		if req.After != nil && string(key) <= string(req.After) || req.Buckets != nil && !req.Buckets.Contains(key) {
			return nil
		}
		if len(resp.Items) > 0 && size >= req.MaxBytes {
			resp.Next = resp.Items[len(resp.Items)-1].Key
			return errPageFull
		}
		resp.Items = append(resp.Items, replication.RangeItem{Key: slices.Clone(key), Object: obj})
		size += len(key) + len(obj.Marshal())
		return nil
	})
	if err != nil && err != errPageFull {
		return resp, err
	}
	return resp, nil
}

var errPageFull = fmt.Errorf("page full")

func (r *memReplica) HandleExchange(_ context.Context, _ string, req replication.ExchangeRequest) (replication.ExchangeResponse, error) {
	return r.ae.HandleExchange(req)
}

// counter reads a counter of r's registry.
func (r *memReplica) counter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// sameData fails unless a and b hold equal objects for every key of p.
func sameData(t *testing.T, a, b *memReplica, p int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(a.data[p]) != len(b.data[p]) {
		t.Fatalf("%s holds %d keys, %s %d", a.id, len(a.data[p]), b.id, len(b.data[p]))
	}
	for k, o := range a.data[p] {
		if !o.Equal(b.data[p][k]) {
			t.Fatalf("key %q: %s holds %v, %s %v", k, a.id, o, b.id, b.data[p][k])
		}
	}
}

var (
	actorA = version.Actor(0xa)
	actorB = version.Actor(0xb)
	t0     = time.Unix(1_700_000_000, 0)
)

func write(o *version.Object, actor version.Actor, value string) *version.Object {
	next, _ := o.Write(actor, o.Context(), []byte(value), "text/plain", t0)
	return next
}

// Two replicas of a 100,000-key partition that differ in a few keys (some
// newer on one side, some on the other, one deleted) converge in one
// exchange, and what crossed the network is a small fraction of the data.
func TestAntiEntropyRepairsFewDifferencesCheaply(t *testing.T) {
	net := simnet.New(1)
	peers := func(other string) map[int][]string { return map[int][]string{0: {other}} }
	a := newMemReplica(net, "a", time.Now, time.Hour, peers("b"))
	b := newMemReplica(net, "b", time.Now, time.Hour, peers("a"))

	const keys = 100_000
	common := make(map[string]*version.Object, keys)
	dataBytes := 0
	for i := range keys {
		k := fmt.Sprintf("user/%06d", i)
		common[k] = write(nil, actorA, fmt.Sprintf("value %d of some length, like a small JSON document {\"n\": %d}", i, i))
		dataBytes += len(k) + len(common[k].Marshal())
	}
	a.put(0, common)
	b.put(0, common)

	// 6 keys newer on a, 3 on b, and one deleted on a.
	onlyA, onlyB := map[string]*version.Object{}, map[string]*version.Object{}
	for i := range 6 {
		k := fmt.Sprintf("user/%06d", i*15_000+7)
		onlyA[k] = write(common[k], actorA, "newer on a")
	}
	for i := range 3 {
		k := fmt.Sprintf("user/%06d", i*20_000+11)
		onlyB[k] = write(common[k], actorB, "newer on b")
	}
	deleted := "user/099999"
	onlyA[deleted] = common[deleted].Delete(common[deleted].Context(), t0)
	a.put(0, onlyA)
	b.put(0, onlyB)

	ctx := context.Background()
	repaired, err := a.ae.Exchange(ctx, 0, "b")
	if err != nil {
		t.Fatal(err)
	}
	if repaired != 10 {
		t.Errorf("exchange repaired %d keys, want 10 (3 pulled, 7 pushed)", repaired)
	}
	sameData(t, a, b, 0)
	if o := b.get(0, deleted); o.Live() {
		t.Errorf("b still has the deleted key live: %v", o)
	}
	sent := a.counter(t, "dynamo_antientropy_bytes_total")
	t.Logf("100,000 keys (%d KiB) with 10 differences: %.0f bytes exchanged (%.3f%% of the data)", dataBytes>>10, sent, 100*sent/float64(dataBytes))
	if sent > float64(dataBytes)/100 {
		t.Errorf("exchanged %.0f bytes, more than 1%% of the %d bytes of data", sent, dataBytes)
	}

	// In sync now: the next exchange settles at the root.
	before := a.counter(t, "dynamo_antientropy_bytes_total")
	if n, err := a.ae.Exchange(ctx, 0, "b"); err != nil || n != 0 {
		t.Fatalf("second exchange repaired %d keys (%v), want none", n, err)
	}
	if extra := a.counter(t, "dynamo_antientropy_bytes_total") - before; extra > 64 {
		t.Errorf("an exchange of replicas in sync cost %.0f bytes", extra)
	}
}

// A replica that lost everything gets it all back from its peer's pages,
// and a tree built while writes go on stays exact.
func TestAntiEntropyRefillsAnEmptyReplica(t *testing.T) {
	net := simnet.New(1)
	a := newMemReplica(net, "a", time.Now, time.Hour, map[int][]string{3: {"b"}})
	b := newMemReplica(net, "b", time.Now, time.Hour, map[int][]string{3: {"a"}})
	objs := map[string]*version.Object{}
	for i := range 5000 {
		objs[fmt.Sprintf("k%d", i)] = write(nil, actorA, fmt.Sprintf("v%d", i))
	}
	a.put(3, objs)

	// Writes race the tree's first build on a.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 500 {
			k := fmt.Sprintf("k%d", i)
			a.put(3, map[string]*version.Object{k: write(objs[k], actorB, "racing")})
		}
	}()
	if _, err := b.ae.Exchange(context.Background(), 3, "a"); err != nil {
		t.Fatal(err)
	}
	<-done
	for range 3 { // the racing writes may need another pass
		if _, err := b.ae.Exchange(context.Background(), 3, "a"); err != nil {
			t.Fatal(err)
		}
	}
	sameData(t, a, b, 3)
	// The trees, kept up to date by every write, agree with a fresh build.
	for _, r := range []*memReplica{a, b} {
		kept := r.trees.Get(3).Root()
		r.trees.Drop(3)
		if n, err := r.ae.Exchange(context.Background(), 3, map[string]string{"a": "b", "b": "a"}[r.id]); err != nil || n != 0 {
			t.Fatalf("%s: exchange after rebuilding the tree repaired %d (%v)", r.id, n, err)
		}
		if rebuilt := r.trees.Get(3).Root(); rebuilt != kept {
			t.Errorf("%s: tree kept by writes has root %x, rebuilt from storage %x", r.id, kept, rebuilt)
		}
	}
}

// Tombstones are purged only once every replica completed an exchange that
// began after the grace period, and a purged tombstone does not come back.
func TestAntiEntropyPurgesTombstonesAfterGrace(t *testing.T) {
	net := simnet.New(1)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	const grace = time.Hour
	a := newMemReplica(net, "a", clock, grace, map[int][]string{1: {"b"}})
	b := newMemReplica(net, "b", clock, grace, map[int][]string{1: {"a"}})

	live := write(nil, actorA, "v")
	tomb := live.Delete(live.Context(), t0)
	a.put(1, map[string]*version.Object{"gone": tomb, "kept": live})
	b.put(1, map[string]*version.Object{"gone": live, "kept": live}) // b missed the delete

	ctx := context.Background()
	a.ae.Round(ctx)
	b.ae.Round(ctx)
	if o := b.get(1, "gone"); o == nil || o.Live() {
		t.Fatalf("b after exchanges holds %v, want the tombstone", o)
	}
	if a.get(1, "gone") == nil || a.counter(t, "dynamo_tombstones_purged_total") != 0 {
		t.Fatal("a purged a tombstone within the grace period")
	}

	advance(grace + time.Minute)
	a.ae.Round(ctx) // a's exchange began after the grace period
	b.ae.Round(ctx)
	if a.get(1, "gone") != nil || b.get(1, "gone") != nil {
		t.Fatalf("tombstone still held after grace and exchanges: a %v, b %v", a.get(1, "gone"), b.get(1, "gone"))
	}
	if a.get(1, "kept") == nil || b.get(1, "kept") == nil {
		t.Fatal("a live key was purged")
	}
	// Nothing brings it back.
	advance(time.Minute)
	a.ae.Round(ctx)
	b.ae.Round(ctx)
	if a.get(1, "gone") != nil || b.get(1, "gone") != nil {
		t.Fatal("a purged key came back")
	}
}
