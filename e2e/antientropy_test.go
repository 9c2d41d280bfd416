package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The anti-entropy tests run three nodes with N=3 (every node replicates
// every key) and hinted handoff off: a node that was away when keys were
// written or deleted keeps no hint anywhere, so only the Merkle tree
// exchanges can bring it up to date. They never read through the cluster
// until the replicas agree (a quorum read would repair the returning node
// itself), and compare each node's own copy with ?local=true.
const (
	// aeConvergenceTimeout is the bound: from the returning node
	// being ready to all three holding identical data.
	aeConvergenceTimeout = 60 * time.Second
	// aeInitialKeys are written, and held by all three, before a node stops.
	aeInitialKeys = 300
	// aeValueBytes is the size of every value written, so that the data
	// to repair is large next to the keys and the tree hashes.
	aeValueBytes = 200
	// aeChurn is how long the two remaining nodes take writes and deletes
	// while the third is away.
	aeChurn = 3 * time.Second
	// aeChurnClients write at once; each owns its own keys, so that every
	// read-then-write of a key is the only one in flight and never leaves
	// siblings.
	aeChurnClients = 4
	// aeRoundTimeout bounds the wait for each node to run a full round of
	// exchanges more.
	aeRoundTimeout = 30 * time.Second
)

// TestAntiEntropyRepairsReturningNode stops C, writes new keys, overwrites
// and deletes keys (some deleted keys written again) through A and B, then
// restarts C and waits for all three to hold the same data, key by key.
// C is stopped with SIGTERM in one case and with kill -9 in the other.
func TestAntiEntropyRepairsReturningNode(t *testing.T) {
	t.Run("sigterm", func(t *testing.T) {
		testAntiEntropyRepairs(t, func(c *cluster) { c.sigterm(t, nodeC) })
	})
	t.Run("kill9", func(t *testing.T) {
		testAntiEntropyRepairs(t, func(c *cluster) { c.kill9(t, nodeC) })
	})
}

func testAntiEntropyRepairs(t *testing.T, stop func(c *cluster)) {
	c := startClusterWith(t, 3, "--hinted-handoff=false", "--anti-entropy-interval=500ms")
	partitions := c.partitions(t)

	initial := rebalanceKeys("ae", aeInitialKeys, aeValueBytes)
	c.writeAll(t, "initial keys", initial, []int{nodeA, nodeB, nodeC})
	for i := range c.nodes {
		c.waitLocalKeys(t, i, initial, startTimeout)
	}
	state := newAEState(initial)
	// Stop C only once every node ran a full round of exchanges: a node
	// runs one only when it works to a single ring with nothing left to
	// receive. Until then a write also needs a quorum of the replicas
	// under the ring before the last join, which C may be needed for.
	c.waitFullRound(t, []int{nodeA, nodeB, nodeC}, partitions)

	stop(c)
	written := c.churn(t, state, []int{nodeA, nodeB}, aeChurn)

	// A and B acknowledged every write (W=2 with C away), so they hold the
	// final state already; hinted handoff being off, nothing is kept for C.
	for _, i := range []int{nodeA, nodeB} {
		if bad, example := c.divergent([]int{i}, state, state.keys()); len(bad) > 0 {
			t.Fatalf("before C returns, n%d differs from the acknowledged state on %d of %d keys, e.g. %s",
				i, len(bad), len(state.want), example)
		}
		m := c.metrics(t, i)
		if stored := m["dynamo_hints_stored_total"]; stored != 0 {
			t.Errorf("n%d stored %v hints with --hinted-handoff=false", i, stored)
		}
	}
	before := map[int]map[string]float64{nodeA: c.metrics(t, nodeA), nodeB: c.metrics(t, nodeB)}

	c.start(t, nodeC)
	c.waitReady(t, nodeC)
	ready := time.Now()
	all := []int{nodeA, nodeB, nodeC}
	pending := state.keys()
	first := -1
	waitFor(t, aeConvergenceTimeout, "all three nodes hold identical data (?local=true)", func() error {
		var example string
		pending, example = c.divergent(all, state, pending)
		if first < 0 {
			first = len(pending)
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d of %d keys still differ, e.g. %s", len(pending), len(state.want), example)
		}
		return nil
	})
	took := time.Since(ready)
	after := map[int]map[string]float64{}
	for _, i := range all {
		after[i] = c.metrics(t, i)
	}
	if first == 0 {
		t.Errorf("n2 held every key as soon as it was ready: nothing was left for anti-entropy to repair")
	}
	live, liveBytes := state.live()
	t.Logf("data: %d keys (%d live, %d bytes of keys and values); while n2 was away: %s",
		len(state.want), live, liveBytes, written)
	t.Logf("repair: %d keys differed when n2 was ready; identical on all three %.2fs after n2 was ready",
		first, took.Seconds())
	var totalBytes, totalRepaired float64
	for _, i := range all {
		d := delta(before[i], after[i])
		totalBytes += d["dynamo_antientropy_bytes_total"]
		totalRepaired += d["dynamo_antientropy_keys_repaired_total"]
		t.Logf("n%d during the repair: keys repaired %v, bytes exchanged %v, exchanges %s, sync age %s",
			i, d["dynamo_antientropy_keys_repaired_total"], d["dynamo_antientropy_bytes_total"],
			exchangeOutcomes(d), syncAges(after[i], partitions))
	}
	t.Logf("repair total: %v keys repaired, %v bytes exchanged (%.1f× the %d bytes written while n2 was away, %.2f× the %d live bytes)",
		totalRepaired, totalBytes, totalBytes/float64(max(written.bytes, 1)), written.bytes,
		totalBytes/float64(max(liveBytes, 1)), liveBytes)

	// Converged, and stays so: a full round of exchanges more changes
	// nothing, on any node.
	c.waitFullRound(t, all, partitions)
	if bad, example := c.divergent(all, state, state.keys()); len(bad) > 0 {
		t.Fatalf("after another round of exchanges, %d of %d keys differ again, e.g. %s", len(bad), len(state.want), example)
	}
}

// TestAntiEntropyPurgesTombstoneOnceEveryReplicaHasIt runs a 1s tombstone
// grace: a key deleted while C is away must keep its tombstone on A and B
// for as long as C is away, however long past the grace, and never come
// back once C, which still holds the value, returns. Once all three have
// the tombstone, every one of them purges it.
func TestAntiEntropyPurgesTombstoneOnceEveryReplicaHasIt(t *testing.T) {
	const grace = time.Second
	c := startClusterWith(t, 3, "--hinted-handoff=false", "--anti-entropy-interval=300ms",
		fmt.Sprintf("--tombstone-grace=%v", grace))
	partitions := c.partitions(t)
	all := []int{nodeA, nodeB, nodeC}

	doomed := kv{key: "tombstone-doomed", value: []byte("deleted while n2 is away")}
	path := keyPath(doomed.key)
	c.put(t, nodeA, path, doomed.value, "text/plain", "")
	for _, i := range all {
		c.waitLocalKeys(t, i, []kv{doomed}, startTimeout)
	}
	var placed struct {
		Partition int `json:"partition"`
	}
	r := c.do(t, nodeA, http.MethodGet, "/cluster/keys/"+doomed.key, nil)
	if err := json.Unmarshal(r.body, &placed); err != nil {
		t.Fatalf("GET /cluster/keys/%s: %v in %v", doomed.key, err, r)
	}

	// As in testAntiEntropyRepairs; also, A and B have then been in sync
	// with C on the key's partition since the write.
	c.waitFullRound(t, all, partitions)
	c.kill9(t, nodeC)
	ctx := expectContext(t, c.expectValue(t, nodeA, path, "", doomed.value, "text/plain"), "read before the delete")
	r = c.do(t, nodeA, http.MethodDelete, path, nil, "X-Context", ctx)
	expect(t, r, http.StatusNoContent, "DELETE with X-Context while n2 is away")
	deleted := time.Now()
	for _, i := range []int{nodeA, nodeB} {
		c.expectAbsent(t, i, path, "?local=true")
	}

	// Well past the grace, with rounds run by A and B since then (each
	// round ends with a purge pass), neither purged: C lacks the tombstone.
	base := map[int]float64{}
	waitFor(t, aeRoundTimeout, "grace passed three times over with n2 away, and A and B ran full rounds since", func() error {
		for _, i := range []int{nodeA, nodeB} {
			m := c.metrics(t, i)
			if p := m["dynamo_tombstones_purged_total"]; p != 0 {
				t.Fatalf("n%d purged %v tombstones %v after the delete, while n2, which lacks it, is away",
					i, p, time.Since(deleted).Round(time.Millisecond))
			}
			if time.Since(deleted) < grace {
				continue
			}
			if _, ok := base[i]; !ok {
				base[i] = exchanges(m)
			}
			if ran := exchanges(m) - base[i]; ran < float64(2*partitions+1) {
				return fmt.Errorf("n%d ran %v exchanges since the grace passed, want %d", i, ran, 2*partitions+1)
			}
		}
		if since := time.Since(deleted); since < 3*grace {
			return fmt.Errorf("only %v since the delete", since.Round(time.Millisecond))
		}
		return nil
	})
	away := time.Since(deleted)
	for _, i := range []int{nodeA, nodeB} {
		m := c.metrics(t, i)
		if p := m["dynamo_tombstones_purged_total"]; p != 0 {
			t.Fatalf("n%d purged %v tombstones while n2 was away", i, p)
		}
		// The partition was last in sync with C before C went away: well
		// past the grace, which is why the tombstone stays.
		age, ok := m[fmt.Sprintf("dynamo_antientropy_sync_age_seconds{partition=\"%d\"}", placed.Partition)]
		if !ok || age < grace.Seconds() {
			t.Errorf("n%d: dynamo_antientropy_sync_age_seconds of partition %d is %v (reported: %v), want over the %v grace with n2 away since before the delete",
				i, placed.Partition, age, ok, grace)
		}
		t.Logf("n%d, %.2fs after the delete with n2 away: no tombstone purged; partition %d in sync with every replica %.2fs ago; exchanges %s",
			i, away.Seconds(), placed.Partition, age, exchangeOutcomes(m))
	}

	c.start(t, nodeC)
	c.waitReady(t, nodeC)
	back := time.Now()
	// Only anti-entropy tells C about the delete; until then C answers
	// with its stale value, but A and B never take it back.
	waitFor(t, aeConvergenceTimeout, "n2 holds the tombstone (?local=true 404)", func() error {
		for _, i := range []int{nodeA, nodeB} {
			if r := c.do(t, i, http.MethodGet, path+"?local=true", nil); r.status != http.StatusNotFound {
				t.Fatalf("n2 back: the deleted key came back on n%d: GET ?local=true: %v", i, r)
			}
		}
		if r := c.do(t, nodeC, http.MethodGet, path+"?local=true", nil); r.status != http.StatusNotFound {
			return fmt.Errorf("n2 ?local=true: %v", r)
		}
		return nil
	})
	t.Logf("n2 held the tombstone %.2fs after it was ready", time.Since(back).Seconds())

	// Now every replica has it: each purges it, and the key stays deleted
	// throughout, through the cluster as on every node.
	round := 0
	waitFor(t, aeConvergenceTimeout, "the tombstone purged on all three", func() error {
		c.expectGone(t, path, all, all[round%len(all)])
		round++
		for _, i := range all {
			if p := c.metrics(t, i)["dynamo_tombstones_purged_total"]; p == 0 {
				return fmt.Errorf("n%d purged no tombstone yet", i)
			}
		}
		return nil
	})
	var purged []string
	for _, i := range all {
		purged = append(purged, fmt.Sprintf("n%d %v", i, c.metrics(t, i)["dynamo_tombstones_purged_total"]))
	}
	t.Logf("tombstone purged on all three %.2fs after n2 was ready (dynamo_tombstones_purged_total: %s)",
		time.Since(back).Seconds(), strings.Join(purged, ", "))

	// Purged everywhere, the key does not come back from anywhere.
	c.waitFullRound(t, all, partitions)
	for _, i := range all {
		c.expectGone(t, path, all, i)
	}
}

// aeWant is what a key must read as once the replicas agree.
type aeWant struct {
	value []byte
	live  bool // false: deleted, 404
}

// aeState is the acknowledged state of every key a test wrote. Each churn
// client only touches the keys it owns, and writes their entries only.
type aeState struct {
	mu   sync.Mutex // guards want; its values are never changed in place
	want map[string]aeWant
}

func newAEState(keys []kv) *aeState {
	s := &aeState{want: map[string]aeWant{}}
	for _, k := range keys {
		s.want[k.key] = aeWant{value: k.value, live: true}
	}
	return s
}

func (s *aeState) set(key string, w aeWant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want[key] = w
}

func (s *aeState) get(key string) aeWant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.want[key]
}

// keys returns every key, sorted.
func (s *aeState) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.want))
	for k := range s.want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// live counts the live keys and their bytes, keys and values.
func (s *aeState) live() (n, size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, w := range s.want {
		if w.live {
			n++
			size += len(k) + len(w.value)
		}
	}
	return n, size
}

// churnCounts is what a churn did.
type churnCounts struct {
	created, overwritten, deleted, rewritten int
	bytes                                    int // keys and values sent, keys of deletes
}

func (w churnCounts) String() string {
	return fmt.Sprintf("%d keys created, %d overwritten, %d deleted, %d written again after their delete (%d bytes of keys and values)",
		w.created, w.overwritten, w.deleted, w.rewritten, w.bytes)
}

// churn writes through the given nodes for d, with aeChurnClients clients:
// new keys, overwrites and deletes of existing keys (with the context of a
// read, so no siblings), and writes of deleted keys (with the 404's
// context). It records the outcome of each in s and fails t on any answer
// but success.
func (c *cluster) churn(t *testing.T, s *aeState, through []int, d time.Duration) churnCounts {
	t.Helper()
	var (
		mu     sync.Mutex // guards total and errs
		total  churnCounts
		errs   []string
		wg     sync.WaitGroup
		owned  = make([][]string, aeChurnClients)
		before = s.keys()
	)
	for k, key := range before {
		owned[k%aeChurnClients] = append(owned[k%aeChurnClients], key)
	}
	start := time.Now()
	for client := range aeChurnClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(client), 1))
			var mine churnCounts
			keys := owned[client]
			for op := 0; time.Since(start) < d; op++ {
				i := through[op%len(through)]
				err := c.churnOne(s, rng, client, op, i, &keys, &mine)
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					enough := len(errs) > 10
					mu.Unlock()
					if enough {
						return
					}
				}
			}
			mu.Lock()
			total.created += mine.created
			total.overwritten += mine.overwritten
			total.deleted += mine.deleted
			total.rewritten += mine.rewritten
			total.bytes += mine.bytes
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		c.logReplicaMetrics(t)
		t.Fatalf("writes while n2 was away: %d failed; first ones:\n%s", len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
	t.Logf("while n2 was away, in %.2fs: %s", time.Since(start).Seconds(), total)
	return total
}

// churnOne does one operation of client on one of its keys through node i.
func (c *cluster) churnOne(s *aeState, rng *rand.Rand, client, op, i int, keys *[]string, n *churnCounts) error {
	roll := rng.IntN(10)
	if roll < 4 || len(*keys) == 0 {
		key := fmt.Sprintf("ae-new-%d-%05d", client, op)
		value := aeValue(key, op)
		if err := c.churnWrite(i, key, value, ""); err != nil {
			return err
		}
		*keys = append(*keys, key)
		s.set(key, aeWant{value: value, live: true})
		n.created++
		n.bytes += len(key) + len(value)
		return nil
	}
	key := (*keys)[rng.IntN(len(*keys))]
	w := s.get(key)
	r, err := c.try(i, http.MethodGet, keyPath(key), nil)
	if err != nil {
		return fmt.Errorf("GET %s on n%d: %v", key, i, err)
	}
	wantStatus := http.StatusOK
	if !w.live {
		wantStatus = http.StatusNotFound
	}
	if r.status != wantStatus || (w.live && !bytes.Equal(r.body, w.value)) {
		return fmt.Errorf("GET %s on n%d: %v, want %d with the last value written", key, i, r, wantStatus)
	}
	ctx := r.header.Get("X-Context")
	switch {
	case !w.live:
		value := aeValue(key, op)
		if err := c.churnWrite(i, key, value, ctx); err != nil {
			return err
		}
		s.set(key, aeWant{value: value, live: true})
		n.rewritten++
		n.bytes += len(key) + len(value)
	case roll < 7:
		value := aeValue(key, op)
		if err := c.churnWrite(i, key, value, ctx); err != nil {
			return err
		}
		s.set(key, aeWant{value: value, live: true})
		n.overwritten++
		n.bytes += len(key) + len(value)
	default:
		r, err := c.try(i, http.MethodDelete, keyPath(key), nil, "X-Context", ctx)
		if err != nil {
			return fmt.Errorf("DELETE %s on n%d: %v", key, i, err)
		}
		if r.status != http.StatusNoContent {
			return fmt.Errorf("DELETE %s on n%d: %v", key, i, r)
		}
		s.set(key, aeWant{})
		n.deleted++
		n.bytes += len(key)
	}
	return nil
}

// churnWrite PUTs value with context ctx ("" sends none) through node i.
func (c *cluster) churnWrite(i int, key string, value []byte, ctx string) error {
	h := []string{"Content-Type", "text/plain"}
	if ctx != "" {
		h = append(h, "X-Context", ctx)
	}
	r, err := c.try(i, http.MethodPut, keyPath(key), value, h...)
	if err != nil {
		return fmt.Errorf("PUT %s on n%d: %v", key, i, err)
	}
	if r.status != http.StatusNoContent {
		return fmt.Errorf("PUT %s on n%d: %v", key, i, r)
	}
	return nil
}

// aeValue is a value of aeValueBytes that names its key and the operation
// that wrote it, so that a stale value shows which it is.
func aeValue(key string, op int) []byte {
	v := []byte(fmt.Sprintf("%s written by op %d:", key, op))
	for len(v) < aeValueBytes {
		v = append(v, byte('a'+(op+len(v))%26))
	}
	return v[:aeValueBytes]
}

// divergent returns those of keys whose own copy (?local=true) on one of
// nodes is not what s wants, and what one of them answered.
func (c *cluster) divergent(nodes []int, s *aeState, keys []string) ([]string, string) {
	bad := make([]bool, len(keys))
	var (
		mu      sync.Mutex // guards example
		example string
	)
	forEach(len(keys), checkWorkers, func(k int) {
		w := s.get(keys[k])
		for _, i := range nodes {
			r, err := c.try(i, http.MethodGet, keyPath(keys[k])+"?local=true", nil)
			if err == nil && ((w.live && r.status == http.StatusOK && bytes.Equal(r.body, w.value)) ||
				(!w.live && r.status == http.StatusNotFound)) {
				continue
			}
			bad[k] = true
			mu.Lock()
			if err != nil {
				example = fmt.Sprintf("%s on n%d: %v", keys[k], i, err)
			} else if w.live {
				example = fmt.Sprintf("%s on n%d: %v, want 200 %q", keys[k], i, r, trim(w.value))
			} else {
				example = fmt.Sprintf("%s on n%d: %v, want 404 (deleted)", keys[k], i, r)
			}
			mu.Unlock()
			return
		}
	})
	var out []string
	for k, b := range bad {
		if b {
			out = append(out, keys[k])
		}
	}
	return out, example
}

// expectGone fails t unless path is absent (404) on every one of nodes'
// own copies and through the cluster, read through node via.
func (c *cluster) expectGone(t *testing.T, path string, nodes []int, via int) {
	t.Helper()
	for _, i := range nodes {
		if r := c.do(t, i, http.MethodGet, path+"?local=true", nil); r.status != http.StatusNotFound {
			t.Fatalf("the deleted key came back on n%d: GET %s?local=true: %v", i, path, r)
		}
	}
	if r := c.do(t, via, http.MethodGet, path, nil); r.status != http.StatusNotFound {
		t.Fatalf("the deleted key came back: GET %s through n%d: %v", path, via, r)
	}
}

// partitions is the cluster's partition count, from node A's GET /cluster.
func (c *cluster) partitions(t *testing.T) int {
	t.Helper()
	var info clusterInfo
	r := c.do(t, nodeA, http.MethodGet, "/cluster", nil)
	if err := json.Unmarshal(r.body, &info); err != nil || info.Partitions <= 0 {
		t.Fatalf("GET /cluster: no partition count in %v (%v)", r, err)
	}
	return info.Partitions
}

// waitFullRound waits until each of nodes ran a full round of exchanges
// more: one with each other replica for every partition, that is, on
// three nodes with N=3, twice the partition count.
func (c *cluster) waitFullRound(t *testing.T, nodes []int, partitions int) {
	t.Helper()
	start := time.Now()
	base := map[int]float64{}
	for _, i := range nodes {
		base[i] = exchanges(c.metrics(t, i))
	}
	// One more than a round: the exchange in flight at the first scrape
	// may have begun before it.
	want := float64(2*partitions + 1)
	waitFor(t, aeRoundTimeout, "a full round of exchanges more on every node", func() error {
		for _, i := range nodes {
			if ran := exchanges(c.metrics(t, i)) - base[i]; ran < want {
				return fmt.Errorf("n%d ran %v exchanges more, want %v", i, ran, want)
			}
		}
		return nil
	})
	t.Logf("every node ran a full round of exchanges more in %.2fs", time.Since(start).Seconds())
}

// exchanges sums dynamo_antientropy_exchanges_total over its outcomes.
func exchanges(m map[string]float64) float64 {
	var sum float64
	for series, v := range m {
		if strings.HasPrefix(series, "dynamo_antientropy_exchanges_total{") {
			sum += v
		}
	}
	return sum
}

// exchangeOutcomes formats dynamo_antientropy_exchanges_total by outcome.
func exchangeOutcomes(m map[string]float64) string {
	var parts []string
	for series, v := range m {
		if outcome, ok := strings.CutPrefix(series, "dynamo_antientropy_exchanges_total{"); ok {
			parts = append(parts, fmt.Sprintf("%s %v", strings.TrimSuffix(outcome, "}"), v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// syncAges summarizes dynamo_antientropy_sync_age_seconds: how many of the
// partitions report one, and the largest.
func syncAges(m map[string]float64, partitions int) string {
	n, oldest := 0, 0.0
	for series, v := range m {
		if strings.HasPrefix(series, "dynamo_antientropy_sync_age_seconds{") {
			n++
			oldest = max(oldest, v)
		}
	}
	return fmt.Sprintf("%d/%d partitions in sync at most %.2fs ago", n, partitions, oldest)
}

// delta is after minus before, series by series; a series absent before
// counts from zero (a restarted node's counters).
func delta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for series, v := range after {
		out[series] = v - before[series]
	}
	return out
}
