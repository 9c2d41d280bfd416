package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/client"
)

// TestRoutingBenchmark compares a client that routes each request to its
// key's coordinator with one that sends requests round robin over every
// node, as a load balancer would, on a local cluster of real dynamo
// processes. With more nodes than N, round robin sends a quarter of the
// requests (4 nodes, N=3) to a node that is not a replica and must forward
// them.
//
// It runs only with DYNAMO_CLIENT_BENCH=1 (it builds the binary and takes
// a few minutes):
//
//	DYNAMO_CLIENT_BENCH=1 go test -run TestRoutingBenchmark -v -count=1 ./client/
//
// Settings, from the environment: DYNAMO_CLIENT_BENCH_NODES (4),
// _N (3), _CLIENTS (16 closed-loop workers), _DURATION (20s per round),
// _ROUNDS (2 per mode, alternating so that drift on a shared machine hits
// both), _KEYS (10000), _VALUE (1024 bytes), _READS (50: percent of
// reads; the other operations are writes that carry the context the worker
// last saw for the key, so siblings stay rare).
func TestRoutingBenchmark(t *testing.T) {
	if os.Getenv("DYNAMO_CLIENT_BENCH") != "1" {
		t.Skip("set DYNAMO_CLIENT_BENCH=1 to run the routing benchmark")
	}
	s := benchSettings{
		nodes:    envInt(t, "DYNAMO_CLIENT_BENCH_NODES", 4),
		n:        envInt(t, "DYNAMO_CLIENT_BENCH_N", 3),
		clients:  envInt(t, "DYNAMO_CLIENT_BENCH_CLIENTS", 16),
		rounds:   envInt(t, "DYNAMO_CLIENT_BENCH_ROUNDS", 2),
		keys:     envInt(t, "DYNAMO_CLIENT_BENCH_KEYS", 10000),
		value:    envInt(t, "DYNAMO_CLIENT_BENCH_VALUE", 1024),
		reads:    envInt(t, "DYNAMO_CLIENT_BENCH_READS", 50),
		duration: 20 * time.Second,
	}
	if d := os.Getenv("DYNAMO_CLIENT_BENCH_DURATION"); d != "" {
		var err error
		if s.duration, err = time.ParseDuration(d); err != nil {
			t.Fatalf("DYNAMO_CLIENT_BENCH_DURATION: %v", err)
		}
	}
	addrs := startProcesses(t, s.nodes, s.n)

	routed := newClient(t, addrs)
	roundRobin := newClient(t, addrs, client.WithRouting(false))
	ctx := context.Background()
	value := make([]byte, s.value)
	t.Logf("preloading %d keys", s.keys)
	preload(t, routed, s.keys, value)

	results := map[string]*latencies{"client-routed": {}, "round-robin": {}}
	for round := range s.rounds {
		for _, mode := range []string{"client-routed", "round-robin"} {
			c := routed
			if mode == "round-robin" {
				c = roundRobin
			}
			r := runWorkload(ctx, c, s, value, uint64(round))
			t.Logf("round %d %-13s %8.0f ops/s  p99.9 %6.2f ms  errors %d", round+1, mode,
				float64(len(r.all))/s.duration.Seconds(), ms(r.percentile(r.all, 0.999)), r.errors)
			results[mode].merge(r)
		}
	}
	window := s.duration.Seconds() * float64(s.rounds)
	report := fmt.Sprintf("%d nodes, N=%d (R=W=%d), %d clients, %d keys of %d B, %d%% reads, %d x %s per mode\n",
		s.nodes, s.n, s.n/2+1, s.clients, s.keys, s.value, s.reads, s.rounds, s.duration)
	report += fmt.Sprintf("%-14s %-6s %9s %8s %8s %8s %8s %7s\n", "mode", "op", "ops/s", "p50 ms", "p99 ms", "p99.9", "max ms", "errors")
	for _, mode := range []string{"client-routed", "round-robin"} {
		r := results[mode]
		for _, op := range []struct {
			name string
			d    []time.Duration
		}{{"all", r.all}, {"get", r.get}, {"put", r.put}} {
			if len(op.d) == 0 {
				continue
			}
			errs := "-"
			if op.name == "all" {
				errs = strconv.Itoa(r.errors)
			}
			report += fmt.Sprintf("%-14s %-6s %9.0f %8.2f %8.2f %8.2f %8.2f %7s\n", mode, op.name,
				float64(len(op.d))/window, ms(r.percentile(op.d, 0.5)), ms(r.percentile(op.d, 0.99)),
				ms(r.percentile(op.d, 0.999)), ms(r.percentile(op.d, 1)), errs)
		}
	}
	t.Log("\n" + report)
}

type benchSettings struct {
	nodes, n, clients, rounds, keys, value int
	reads                                  int // percent of operations that are reads
	duration                               time.Duration
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencies holds every successful operation's latency of a run.
type latencies struct {
	all, get, put []time.Duration
	errors        int
}

func (l *latencies) merge(o *latencies) {
	l.all = append(l.all, o.all...)
	l.get = append(l.get, o.get...)
	l.put = append(l.put, o.put...)
	l.errors += o.errors
}

// percentile returns the p-quantile (nearest rank) of d.
func (l *latencies) percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func benchKey(i int) string { return fmt.Sprintf("bench-%06d", i) }

func preload(t *testing.T, c *client.Client, keys int, value []byte) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < keys; i += 16 {
				if _, err := c.Put(context.Background(), benchKey(i), value); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("preload: %v", err)
	}
}

// runWorkload runs s.clients closed-loop workers for s.duration: each picks
// a key uniformly and reads it (s.reads percent of the time) or writes it
// with the context it last saw for it.
func runWorkload(ctx context.Context, c *client.Client, s benchSettings, value []byte, seed uint64) *latencies {
	ctx, cancel := context.WithTimeout(ctx, s.duration)
	defer cancel()
	out := make([]*latencies, s.clients)
	var wg sync.WaitGroup
	for w := range s.clients {
		wg.Go(func() {
			l := &latencies{}
			out[w] = l
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			seen := map[string]string{}
			for ctx.Err() == nil {
				key := benchKey(rng.IntN(s.keys))
				start := time.Now()
				if rng.IntN(100) < s.reads {
					res, err := c.Get(ctx, key)
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						l.errors++
						continue
					}
					seen[key] = res.Context
					l.get = append(l.get, time.Since(start))
				} else {
					token, err := c.Put(ctx, key, value, client.CausalContext(seen[key]))
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						l.errors++
						continue
					}
					seen[key] = token
					l.put = append(l.put, time.Since(start))
				}
				l.all = append(l.all, time.Since(start))
			}
		})
	}
	wg.Wait()
	total := &latencies{}
	for _, l := range out {
		total.merge(l)
	}
	return total
}

// startProcesses builds ./cmd/dynamo and starts nodes processes of it on
// free loopback ports, the first alone and the others joining it, and
// returns their client addresses once every node is ready and works to the
// same ring of every member. The processes are stopped when the test ends.
func startProcesses(t *testing.T, nodes, n int) []string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dynamo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/dynamo")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dynamo: %v\n%s", err, out)
	}
	ports := freeAddrs(t, 3*nodes)
	var addrs []string
	for i := range nodes {
		listen, peer, gossip := ports[3*i], ports[3*i+1], ports[3*i+2]
		args := []string{
			"--id=n" + strconv.Itoa(i), "--listen=" + listen, "--peer-listen=" + peer, "--gossip-listen=" + gossip,
			"--data-dir=" + filepath.Join(dir, "n"+strconv.Itoa(i)),
			"--n=" + strconv.Itoa(n), "--r=" + strconv.Itoa(n/2+1), "--w=" + strconv.Itoa(n/2+1),
			"--gossip-profile=local", "--log-level=warn",
		}
		if i > 0 {
			args = append(args, "--join="+ports[2])
		}
		logFile, err := os.Create(filepath.Join(dir, "n"+strconv.Itoa(i)+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			logFile.Close()
			close(exited)
		}()
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		})
		addrs = append(addrs, listen)
		if i == 0 {
			waitFor(t, 30*time.Second, func() error { return ready(listen) })
		}
	}
	waitFor(t, 60*time.Second, func() error { return settled(addrs) })
	return addrs
}

func freeAddrs(t *testing.T, count int) []string {
	var out []string
	var lns []net.Listener
	for range count {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		<-tick.C
	}
}

func ready(addr string) error {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: readyz %d", addr, resp.StatusCode)
	}
	return nil
}

// settled reports whether every node is ready, sees every member alive with
// nothing in transfer, and has the same ring.
func settled(addrs []string) error {
	version := ""
	for _, addr := range addrs {
		if err := ready(addr); err != nil {
			return err
		}
		var ring struct {
			Version string `json:"version"`
		}
		var cluster client.ClusterInfo
		if err := fetchJSON("http://"+addr+"/cluster/ring", &ring); err != nil {
			return err
		}
		if err := fetchJSON("http://"+addr+"/cluster", &cluster); err != nil {
			return err
		}
		if len(cluster.Members) != len(addrs) {
			return fmt.Errorf("%s sees %d members", addr, len(cluster.Members))
		}
		for _, m := range cluster.Members {
			if m.State != "alive" || m.PartitionsInTransfer > 0 {
				return fmt.Errorf("%s sees %s %s with %d partitions in transfer", addr, m.ID, m.State, m.PartitionsInTransfer)
			}
		}
		if version != "" && ring.Version != version {
			return errors.New("the nodes work to different rings")
		}
		version = ring.Version
	}
	return nil
}

func fetchJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
