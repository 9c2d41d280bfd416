package node_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// load writes new keys and reads back acknowledged ones through the running
// nodes, as clients behind a load balancer would: a node that reports not
// ready is skipped, as the balancer's health check would.
type load struct {
	c      *nodetest.Cluster
	mu     sync.Mutex // guards acked
	acked  []string
	fails  atomic.Int64
	errs   chan error
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func startLoad(t *testing.T, c *nodetest.Cluster, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{c: c, cancel: cancel, errs: make(chan error, 100)}
	for w := range workers {
		l.done.Go(func() { l.run(ctx, w) })
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) pick(ctx context.Context, r *rand.Rand) *node.Node {
	for ctx.Err() == nil {
		running := l.c.Running()
		if len(running) == 0 {
			return nil
		}
		if n, ok := l.c.Lookup(running[r.IntN(len(running))]); ok && n.Ready() {
			return n
		}
	}
	return nil
}

func (l *load) run(ctx context.Context, worker int) {
	r := rand.New(rand.NewPCG(uint64(worker), 7))
	for i := 0; ctx.Err() == nil; i++ {
		key := fmt.Sprintf("load-%d-%d", worker, i)
		if err := l.try(ctx, r, func(n *node.Node) error {
			_, err := n.Put(ctx, node.PutRequest{Key: []byte(key), Value: []byte(key)})
			return err
		}); err != nil {
			l.fail(fmt.Errorf("put %s: %w", key, err))
			continue
		}
		l.mu.Lock()
		l.acked = append(l.acked, key)
		old := l.acked[r.IntN(len(l.acked))]
		l.mu.Unlock()
		if err := l.try(ctx, r, func(n *node.Node) error {
			obj, err := n.Get(ctx, node.GetRequest{Key: []byte(old)})
			if err == nil && !slices.Equal(values(obj), []string{old}) {
				// Joint quorums: no read during a ring change may see less
				// than an acknowledged write.
				return fmt.Errorf("read %q after its write was acknowledged", values(obj))
			}
			return err
		}); err != nil {
			l.fail(fmt.Errorf("get %s: %w", old, err))
		}
	}
}

// try runs op on a ready node, and again on another if the chosen one
// turned out not ready (a balancer's retry of a refused request).
func (l *load) try(ctx context.Context, r *rand.Rand, op func(*node.Node) error) error {
	for {
		n := l.pick(ctx, r)
		if n == nil {
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("no node running")
		}
		err := op(n)
		if !errors.Is(err, node.ErrNotReady) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (l *load) fail(err error) {
	l.fails.Add(1)
	select {
	case l.errs <- err:
	default:
	}
}

func (l *load) stop() {
	l.cancel()
	l.done.Wait()
}

func (l *load) check(t *testing.T) {
	t.Helper()
	if n := l.fails.Load(); n > 0 {
		close(l.errs)
		for err := range l.errs {
			t.Log(err)
		}
		t.Fatalf("%d client requests failed during the membership change", n)
	}
}

func TestRebalanceUnderLoadLosesNothing(t *testing.T) {
	cfg := nodetest.DefaultConfig()
	cfg.Partitions = 256
	if os.Getenv("DEBUGLOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := nodetest.MakeCluster(t, 3, cfg)
	l := startLoad(t, c, 4)
	settle := 30 * time.Second

	c.AddNode() // node-3
	c.WaitSettled(settle)
	c.AddNode() // node-4
	c.WaitSettled(settle)
	shares(t, c)

	c.Leave("node-1", settle)
	c.WaitSettled(settle)

	c.Kill("node-2") // died for good
	c.Remove("node-0", "node-2", settle)
	c.WaitSettled(settle)
	shares(t, c)

	l.stop()
	l.check(t)
	l.mu.Lock()
	acked := slices.Clone(l.acked)
	l.mu.Unlock()
	t.Logf("%d writes acknowledged during two joins, a leave and a remove", len(acked))
	if len(acked) < 50 {
		t.Fatalf("only %d writes went through; the load did not run", len(acked))
	}
	for _, key := range acked {
		obj := get(t, c.Node("node-0"), key)
		if !slices.Equal(values(obj), []string{key}) {
			t.Fatalf("acknowledged write %q reads as %q", key, values(obj))
		}
	}
	// Every replica holds its keys on its own, and only replicas do.
	for _, key := range acked {
		replicas := c.Replicas("node-0", []byte(key))
		for _, id := range c.Running() {
			obj, err := c.Node(id).GetLocal([]byte(key))
			if err != nil {
				t.Fatal(err)
			}
			if want := slices.Contains(replicas, id); want != obj.Live() {
				for _, other := range c.Running() {
					h, _ := c.Node(other).PendingHints()
					o, _ := c.Node(other).GetLocal([]byte(key))
					t.Logf("%s: hints %v, holds %v", other, h, o.Live())
				}
				t.Fatalf("%s holds %q: %v, but is a replica: %v (replicas %v, partition %d)", id, key, obj.Live(), want, replicas, c.Node("node-0").KeyInfo([]byte(key)).Partition)
			}
		}
	}
}

// shares checks that each node's share of keys is within 10% of the mean:
// the share of 50,000 keys (replicas counted) that the ring gives each node.
// That placement is what the data follows: the end of the test checks that
// every node holds exactly the written keys the ring gives it.
func shares(t *testing.T, c *nodetest.Cluster) {
	t.Helper()
	counts := map[string]int{}
	const keys = 50_000
	via := c.Node(c.Running()[0])
	for i := range keys {
		for _, id := range via.KeyInfo([]byte(fmt.Sprintf("share-%d", i))).PreferenceList {
			counts[id]++
		}
	}
	mean := float64(keys*3) / float64(len(c.Running()))
	for _, id := range c.Running() {
		n := counts[id]
		t.Logf("%s holds %d of %d key replicas (mean %.0f)", id, n, keys*3, mean)
		if float64(n) > 1.1*mean || float64(n) < 0.9*mean {
			t.Errorf("%s holds %d key replicas, more than 10%% from the mean %.0f", id, n, mean)
		}
	}
}

func TestRemoveRefusesLiveAndUnknownMembers(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	if err := c.Node("node-0").Remove("node-1"); !errors.Is(err, node.ErrMemberAlive) {
		t.Fatalf("remove of a live member = %v, want ErrMemberAlive", err)
	}
	if err := c.Node("node-0").Remove("node-0"); !errors.Is(err, node.ErrMemberAlive) {
		t.Fatalf("remove of itself = %v, want ErrMemberAlive", err)
	}
	if err := c.Node("node-0").Remove("nobody"); !errors.Is(err, node.ErrUnknownMember) {
		t.Fatalf("remove of a stranger = %v, want ErrUnknownMember", err)
	}
}

func TestJoinedNodeReceivesItsPartitions(t *testing.T) {
	cfg := nodetest.DefaultConfig()
	c := nodetest.MakeCluster(t, 3, cfg)
	keys := keysN("j", 300)
	for i, k := range keys {
		put(t, c.Node(c.IDs()[i%3]), k, k, nil, false)
	}
	id := c.AddNode()
	c.WaitSettled(20 * time.Second)
	held := 0
	for _, k := range keys {
		replicas := c.Replicas(id, []byte(k))
		for _, r := range c.Running() {
			obj, err := c.Node(r).GetLocal([]byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(replicas, r) != obj.Live() {
				t.Fatalf("%s holds %q: %v; replica: %v", r, k, obj.Live(), slices.Contains(replicas, r))
			}
		}
		if slices.Contains(replicas, id) {
			held++
		}
	}
	if held == 0 {
		t.Fatal("the new node replicates none of the keys")
	}
	t.Logf("the new node received %d of %d keys", held, len(keys))
}

// A node of the old ring that dies or hangs while data moves does not make
// writes fail: the joint quorum's old list takes acks from the other nodes
// in its place, as the sloppy quorum does for the new one. Two nodes grow to
// three (N goes from 2 to 3), and one of the two old ones fails at once.
func TestWritableWhenAnOldReplicaFailsDuringATransition(t *testing.T) {
	for name, fail := range map[string]func(*nodetest.Cluster, string){
		"killed": (*nodetest.Cluster).Kill,
		"hung":   func(c *nodetest.Cluster, id string) { c.Net.Pause(id) },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := nodetest.DefaultConfig()
			cfg.RequestTimeout = time.Second
			c := nodetest.MakeCluster(t, 2, cfg)
			c.AddNode() // node-2
			fail(c, "node-1")
			for _, k := range keysN("during", 20) {
				put(t, c.Node("node-0"), k, k, nil, false) // fails the test on any error
			}
			c.Net.Resume("node-1")
		})
	}
}
