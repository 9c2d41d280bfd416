package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The failure tests run three nodes with N=3, W=2 (the defaults): every
// node replicates every key, so a write through A or B while C is away is
// acknowledged by A and B, and its coordinator keeps the hint for C (there
// is no stand-in beyond the first N). C must catch up from those hints
// alone: the tests never read through the cluster, which could repair C,
// and look at C's own copy only with ?local=true.
const (
	failureKeys        = 1000
	writeConcurrency   = 8
	convergenceTimeout = 15 * time.Second // from the issue: every key on the returning node
	hintsTimeout       = 5 * time.Second  // acknowledged writes' hints on disk
	checkConcurrency   = 8
)

// Roles in the failure tests: n0 is the seed the others join through.
const (
	nodeA = 0
	nodeB = 1
	nodeC = 2
)

// TestWritesWhileNodeHung freezes C with SIGSTOP (to the others a hung
// process looks like a cut link: connections open, nothing answers), writes
// through A and B, resumes C and waits for hinted handoff to give it every
// key.
func TestWritesWhileNodeHung(t *testing.T) {
	c := startCluster(t, 3)
	keys := failureKeySet("hung", failureKeys)

	c.signal(t, nodeC, syscall.SIGSTOP)
	c.writeAll(t, "while n2 is stopped (SIGSTOP)", keys, []int{nodeA, nodeB})
	c.logPendingHints(t, "right after the writes", nodeC, nodeA, nodeB)
	// Stores sent to C before A and B noticed it hung are still waiting
	// for it (up to the request timeout); each becomes a hint when it
	// times out. Keep C stopped until then, so that it must catch up
	// through hinted handoff. (What reached C's socket buffers before it
	// stopped may still be applied when it resumes: a duplicate, merged
	// harmlessly.)
	c.waitHintsFor(t, nodeC, len(keys), nodeA, nodeB)

	c.signal(t, nodeC, syscall.SIGCONT)
	back := time.Now()
	took := c.waitLocalKeys(t, nodeC, keys, convergenceTimeout)
	t.Logf("n2 held all %d keys (?local=true) %.2fs after SIGCONT", len(keys), took.Seconds())

	// The hints that did it: stored on A and B, delivered, and gone.
	c.waitNoPendingHints(t, nodeC, convergenceTimeout, nodeA, nodeB)
	t.Logf("A and B hold no hints for n2 %.2fs after SIGCONT", time.Since(back).Seconds())
	for _, i := range []int{nodeA, nodeB} {
		m := c.metrics(t, i)
		stored, delivered := m["dynamo_hints_stored_total"], m["dynamo_hints_delivered_total"]
		t.Logf("n%d: dynamo_hints_stored_total %v, dynamo_hints_delivered_total %v, dynamo_hints_dropped_total %v",
			i, stored, delivered, m["dynamo_hints_dropped_total"])
		if stored <= 0 || delivered <= 0 {
			t.Errorf("n%d coordinated writes while n2 was stopped: want dynamo_hints_stored_total and dynamo_hints_delivered_total > 0, got %v and %v",
				i, stored, delivered)
		}
	}
}

// TestWritesWhileNodeKilled is TestWritesWhileNodeHung with kill -9 and a
// restart (same flags, same data dir) instead of SIGSTOP and SIGCONT.
func TestWritesWhileNodeKilled(t *testing.T) {
	c := startCluster(t, 3)
	keys := failureKeySet("killed", failureKeys)

	c.kill9(t, nodeC)
	c.writeAll(t, "while n2 is killed (kill -9)", keys, []int{nodeA, nodeB})
	c.logPendingHints(t, "after the writes", nodeC, nodeA, nodeB)

	c.start(t, nodeC)
	c.waitReady(t, nodeC)
	took := c.waitLocalKeys(t, nodeC, keys, convergenceTimeout)
	t.Logf("n2 held all %d keys (?local=true) %.2fs after its restart was ready", len(keys), took.Seconds())
	c.waitNoPendingHints(t, nodeC, convergenceTimeout, nodeA, nodeB)
}

// TestHintHolderRestartLosesNothing kills C, writes through A and B (which
// then hold hints for C), kills and restarts A while C is still down, and
// only then restarts C: C must get every key from A's durable hints and
// B's, and A must still hold every key itself.
func TestHintHolderRestartLosesNothing(t *testing.T) {
	c := startCluster(t, 3)
	keys := failureKeySet("holder", failureKeys)

	c.kill9(t, nodeC)
	c.writeAll(t, "while n2 is killed (kill -9)", keys, []int{nodeA, nodeB})

	// Every acknowledged write left one hint for C, on its coordinator. The
	// hint is kept after the client's 204 (W=2 is met by A and B), so give
	// the last ones a moment to reach the disk.
	held := c.waitHintsFor(t, nodeC, len(keys), nodeA, nodeB)
	if held[nodeA] == 0 || held[nodeB] == 0 {
		t.Fatalf("want hints for n2 on both writers, got n0 %d, n1 %d", held[nodeA], held[nodeB])
	}

	// kill -9 the hint holder A and restart it while C is still down.
	c.kill9(t, nodeA)
	c.start(t, nodeA)
	c.waitReady(t, nodeA)
	if !c.nodes[nodeC].proc.exited() {
		t.Fatal("n2 is running before its restart")
	}
	if got := c.pendingHints(t, nodeA, "n2"); got != held[nodeA] {
		t.Fatalf("after kill -9 and restart, n0 holds %d hints for n2, had %d", got, held[nodeA])
	}

	c.start(t, nodeC)
	c.waitReady(t, nodeC)
	took := c.waitLocalKeys(t, nodeC, keys, convergenceTimeout)
	t.Logf("n2 held all %d keys (?local=true) %.2fs after its restart was ready", len(keys), took.Seconds())
	c.waitNoPendingHints(t, nodeC, convergenceTimeout, nodeA, nodeB)
	// The restarted A's counter starts at zero: what it counts came from
	// the hints it found on disk.
	for _, i := range []int{nodeA, nodeB} {
		if d := c.metrics(t, i)["dynamo_hints_delivered_total"]; d != float64(held[i]) {
			t.Errorf("n%d delivered %v hints, want the %d it held", i, d, held[i])
		}
	}

	// A acknowledged (or coordinated) every write: its own copy has them
	// all, kill -9 notwithstanding.
	if missing, example := c.missingLocal(nodeA, keys); len(missing) > 0 {
		t.Errorf("after kill -9 and restart, n0 lacks %d of %d acknowledged keys, e.g. %s: %s",
			len(missing), len(keys), missing[0].key, example)
	}
}

// kv is one key the failure tests write, and its value.
type kv struct {
	key   string
	value []byte
}

func failureKeySet(prefix string, n int) []kv {
	keys := make([]kv, n)
	for k := range keys {
		keys[k] = kv{
			key:   fmt.Sprintf("%s-%04d", prefix, k),
			value: []byte(fmt.Sprintf("value %d of %s", k, prefix)),
		}
	}
	return keys
}

// writeAll PUTs every key once, round robin through the given nodes, with
// writeConcurrency clients, and fails t unless every write got 204. It logs
// how many were accepted and the throughput.
func (c *cluster) writeAll(t *testing.T, what string, keys []kv, through []int) {
	t.Helper()
	c.writeAllWith(t, what, keys, through, writeConcurrency)
}

// writeAllWith is writeAll with the given number of concurrent clients.
func (c *cluster) writeAllWith(t *testing.T, what string, keys []kv, through []int, clients int) {
	t.Helper()
	var (
		mu       sync.Mutex // guards accepted, failures and worst
		accepted int
		failures []string
		worst    time.Duration
		wg       sync.WaitGroup
	)
	next := make(chan int)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for k := range next {
				i := through[k%len(through)]
				began := time.Now()
				r, err := c.try(i, http.MethodPut, keyPath(keys[k].key), keys[k].value, "Content-Type", "text/plain")
				took := time.Since(began)
				at := began.Sub(start).Round(time.Millisecond)
				mu.Lock()
				worst = max(worst, took)
				switch {
				case err != nil:
					failures = append(failures, fmt.Sprintf("PUT %s on n%d sent at +%v, after %v: %v", keys[k].key, i, at, took, err))
				case r.status != http.StatusNoContent:
					failures = append(failures, fmt.Sprintf("PUT %s on n%d sent at +%v, after %v: %v", keys[k].key, i, at, took, r))
				default:
					accepted++
				}
				mu.Unlock()
			}
		})
	}
	for k := range keys {
		next <- k
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%s: %d/%d writes accepted (204) in %.2fs: %.0f writes/s, slowest %v",
		what, accepted, len(keys), elapsed.Seconds(), float64(len(keys))/elapsed.Seconds(), worst.Round(time.Millisecond))
	if len(failures) > 0 {
		slices.Sort(failures)
		c.logReplicaMetrics(t)
		t.Fatalf("%s: %d of %d writes failed; first ones:\n%s", what, len(failures), len(keys),
			strings.Join(failures[:min(len(failures), 10)], "\n"))
	}
}

// waitLocalKeys waits until node i's own copy (?local=true) of every key
// holds its value, polling only the keys still missing, and returns how long
// that took. It fails t after timeout.
func (c *cluster) waitLocalKeys(t *testing.T, i int, keys []kv, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	missing := slices.Clone(keys)
	var took time.Duration
	waitFor(t, timeout, fmt.Sprintf("n%d holds all %d keys (?local=true)", i, len(keys)), func() error {
		var lastErr string
		missing, lastErr = c.missingLocal(i, missing)
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d keys missing, e.g. %s: %s", len(missing), len(keys), missing[0].key, lastErr)
		}
		took = time.Since(start)
		return nil
	})
	return took
}

// missingLocal returns the keys whose value node i's own copy lacks, and
// what one of them answered.
func (c *cluster) missingLocal(i int, keys []kv) ([]kv, string) {
	absent := make([]bool, len(keys))
	var (
		mu      sync.Mutex // guards example
		example string
		wg      sync.WaitGroup
	)
	next := make(chan int)
	for range checkConcurrency {
		wg.Go(func() {
			for k := range next {
				r, err := c.try(i, http.MethodGet, keyPath(keys[k].key)+"?local=true", nil)
				if err == nil && r.status == http.StatusOK && bytes.Equal(r.body, keys[k].value) {
					continue
				}
				absent[k] = true
				mu.Lock()
				if err != nil {
					example = err.Error()
				} else {
					example = r.String()
				}
				mu.Unlock()
			}
		})
	}
	for k := range keys {
		next <- k
	}
	close(next)
	wg.Wait()
	var out []kv
	for k, a := range absent {
		if a {
			out = append(out, keys[k])
		}
	}
	return out, example
}

// metrics scrapes node i's /metrics into series (name with its labels, as
// printed) and values.
func (c *cluster) metrics(t *testing.T, i int) map[string]float64 {
	t.Helper()
	r := c.do(t, i, http.MethodGet, "/metrics", nil)
	expect(t, r, http.StatusOK, "GET /metrics")
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		j := strings.LastIndexByte(line, ' ')
		if j < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[j+1:], 64)
		if err != nil {
			continue
		}
		out[line[:j]] = v
	}
	return out
}

// pendingHints is dynamo_hints_pending{target=...} on node i (absent: 0).
func (c *cluster) pendingHints(t *testing.T, i int, target string) int {
	t.Helper()
	return int(c.metrics(t, i)[fmt.Sprintf("dynamo_hints_pending{target=%q}", target)])
}

func (c *cluster) logPendingHints(t *testing.T, when string, target int, holders ...int) {
	t.Helper()
	var parts []string
	for _, i := range holders {
		parts = append(parts, fmt.Sprintf("n%d %d", i, c.pendingHints(t, i, c.nodes[target].id)))
	}
	t.Logf("%s, hints pending for %s: %s", when, c.nodes[target].id, strings.Join(parts, ", "))
}

// waitHintsFor waits until holders together hold want hints for target
// (with N=3 on three nodes, one per write acknowledged while target was
// away: its coordinator keeps it) and returns the count of each holder, by
// node index.
func (c *cluster) waitHintsFor(t *testing.T, target, want int, holders ...int) map[int]int {
	t.Helper()
	id := c.nodes[target].id
	held := map[int]int{}
	start := time.Now()
	waitFor(t, hintsTimeout, fmt.Sprintf("%d hints held for %s", want, id), func() error {
		sum := 0
		for _, i := range holders {
			held[i] = c.pendingHints(t, i, id)
			sum += held[i]
		}
		if sum != want {
			return fmt.Errorf("%d hints held for %s (%v by holder), want %d", sum, id, held, want)
		}
		return nil
	})
	t.Logf("hints held for %s: %v by holder, %.2fs after the writes", id, held, time.Since(start).Seconds())
	return held
}

// waitNoPendingHints waits until none of holders holds a hint for target.
func (c *cluster) waitNoPendingHints(t *testing.T, target int, timeout time.Duration, holders ...int) {
	t.Helper()
	id := c.nodes[target].id
	waitFor(t, timeout, "no hints pending for "+id, func() error {
		for _, i := range holders {
			if n := c.pendingHints(t, i, id); n != 0 {
				return fmt.Errorf("n%d still holds %d hints for %s", i, n, id)
			}
		}
		return nil
	})
}

// logReplicaMetrics logs, for every running node, the metrics that tell
// why a client request failed: the outcome of requests to each peer, of
// coordinated requests, and the hints kept.
func (c *cluster) logReplicaMetrics(t *testing.T) {
	t.Helper()
	for i, n := range c.nodes {
		if n.proc == nil || n.proc.exited() || n.proc.stopped {
			continue
		}
		r, err := c.try(i, http.MethodGet, "/metrics", nil)
		if err != nil {
			t.Logf("%s: /metrics: %v", n.id, err)
			continue
		}
		var lines []string
		for line := range strings.Lines(string(r.body)) {
			for _, prefix := range []string{"dynamo_replica_requests_total", "dynamo_coordinator_requests_total", "dynamo_hints_", "dynamo_standin_"} {
				if strings.HasPrefix(line, prefix) {
					lines = append(lines, "    "+strings.TrimSpace(line))
				}
			}
		}
		t.Logf("%s metrics:\n%s", n.id, strings.Join(lines, "\n"))
	}
}
