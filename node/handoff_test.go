package node_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// converge is how long replicas get to catch up on their own: hint
// back-offs (at most 2s) plus delivery.
const converge = 10 * time.Second

func totalHints(t *testing.T, c *nodetest.Cluster, ids ...string) int {
	t.Helper()
	total := 0
	for _, id := range ids {
		counts, err := c.Node(id).PendingHints()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range counts {
			total += n
		}
	}
	return total
}

// holdsEverywhere waits until every replica's own copy of every key holds
// exactly want (no client read involved: GetLocal only).
func holdsEverywhere(t *testing.T, c *nodetest.Cluster, keys []string, want []string) {
	t.Helper()
	nodetest.Eventually(t, converge, func() error {
		for _, k := range keys {
			replicas := c.Replicas(c.IDs()[0], []byte(k))
			for _, id := range replicas {
				obj, err := c.Node(id).GetLocal([]byte(k))
				if err != nil {
					return err
				}
				if got := values(obj); !slices.Equal(got, want) {
					return fmt.Errorf("%s holds %q for %q, want %q", id, got, k, want)
				}
			}
		}
		return nil
	})
}

func keysN(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func TestPartitionedReplicaCatchesUpFromHints(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	c.Isolate("node-2")
	keys := keysN("h", 100)
	for i, k := range keys {
		put(t, c.Node(c.IDs()[i%2]), k, "v", nil, false)
	}
	// With three nodes and N=3 no node lies beyond the preference list, so
	// the coordinators keep the hints for node-2 themselves.
	// Hints for node-2 may be written just after the client's answer.
	nodetest.Eventually(t, converge, func() error {
		if n := totalHints(t, c, "node-0", "node-1"); n < len(keys) {
			return fmt.Errorf("%d hints held for node-2, want at least one per key (%d)", n, len(keys))
		}
		return nil
	})
	c.Heal()
	holdsEverywhere(t, c, keys, []string{"v"})
	nodetest.Eventually(t, converge, func() error {
		if n := totalHints(t, c, c.IDs()...); n != 0 {
			return fmt.Errorf("%d hints still pending after delivery", n)
		}
		return nil
	})
}

func TestTwoOfFiveDownStandInsTakeTheWrites(t *testing.T) {
	c := nodetest.MakeCluster(t, 5, nodetest.DefaultConfig())
	c.Kill("node-3")
	c.Kill("node-4")
	keys := keysN("s", 100)
	for i, k := range keys {
		put(t, c.Node(c.IDs()[i%3]), k, "v", nil, false)
		if got := values(get(t, c.Node(c.IDs()[(i+1)%3]), k)); !slices.Equal(got, []string{"v"}) {
			t.Fatalf("read of %q while two nodes are down = %q", k, got)
		}
	}
	nodetest.Eventually(t, converge, func() error {
		if n := totalHints(t, c, "node-0", "node-1", "node-2"); n == 0 {
			return fmt.Errorf("no hints on the stand-ins")
		}
		return nil
	})
	c.Restart("node-3")
	c.Restart("node-4")
	holdsEverywhere(t, c, keys, []string{"v"})
}

func TestOldHintNeverWinsOverNewerWriteOrDelete(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	n0, n1 := c.Node("node-0"), c.Node("node-1")

	// v1 reaches node-0 and node-1; node-0 keeps a hint of v1 for node-2.
	c.Isolate("node-2")
	overwritten := put(t, n0, "overwritten", "v1", nil, false)
	deleted := put(t, n0, "deleted", "v1", nil, false)

	// Now node-0 is away: the newer write and the delete reach node-1 and
	// node-2, while node-0 still holds its stale hints for node-2.
	c.Isolate("node-0")
	put(t, n1, "overwritten", "v2", overwritten, true)
	if _, err := n1.Delete(nodetest.Ctx(t), node.DeleteRequest{Key: []byte("deleted"), Context: deleted, HasContext: true}); err != nil {
		t.Fatal(err)
	}

	c.Heal() // node-0 hands its v1 hints to node-2
	holdsEverywhere(t, c, []string{"overwritten"}, []string{"v2"})
	holdsEverywhere(t, c, []string{"deleted"}, nil)
	nodetest.Eventually(t, converge, func() error {
		if n := totalHints(t, c, c.IDs()...); n != 0 {
			return fmt.Errorf("%d hints still pending", n)
		}
		return nil
	})
	holdsEverywhere(t, c, []string{"overwritten"}, []string{"v2"})
	holdsEverywhere(t, c, []string{"deleted"}, nil)
}

func TestHintsSurviveRestartOfTheirHolder(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	c.Isolate("node-2")
	keys := keysN("r", 50)
	for _, k := range keys {
		put(t, c.Node("node-0"), k, "v", nil, false)
	}
	nodetest.Eventually(t, converge, func() error {
		if n := totalHints(t, c, "node-0"); n < len(keys) {
			return fmt.Errorf("node-0 holds %d hints, want %d", n, len(keys))
		}
		return nil
	})
	before := totalHints(t, c, "node-0")
	c.Kill("node-0")
	c.Restart("node-0")
	if after := totalHints(t, c, "node-0"); after != before {
		t.Fatalf("hints after restart = %d, before = %d", after, before)
	}
	c.Heal()
	holdsEverywhere(t, c, keys, []string{"v"})
}

func TestReadRepairFixesStaleReplica(t *testing.T) {
	cfg := nodetest.DefaultConfig()
	cfg.HintedHandoff = false // no hint may fix the replica: only the read
	c := nodetest.MakeCluster(t, 3, cfg)
	c.Isolate("node-2")
	put(t, c.Node("node-0"), "stale", "v", nil, false)
	c.Heal()
	if obj, _ := c.Node("node-2").GetLocal([]byte("stale")); obj != nil {
		t.Fatalf("node-2 has the key before any read: %v", values(obj))
	}
	// A read through the cluster that reaches node-2 sends it the value.
	if _, err := c.Node("node-2").Get(nodetest.Ctx(t), node.GetRequest{Key: []byte("stale"), R: 3}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, converge, func() error {
		obj, err := c.Node("node-2").GetLocal([]byte("stale"))
		if err != nil || !slices.Equal(values(obj), []string{"v"}) {
			return fmt.Errorf("node-2 holds %v (%v)", values(obj), err)
		}
		return nil
	})
}

func TestStandInsServeReadsOfHintedWrites(t *testing.T) {
	c := nodetest.MakeCluster(t, 5, nodetest.DefaultConfig())
	// Find a key whose replicas are node-0..2 in some order, so that with
	// two of them down its only copies are the coordinator's and hints.
	var key string
	for i := 0; ; i++ {
		key = fmt.Sprintf("k-%d", i)
		r := c.Replicas("node-0", []byte(key))
		if r[0] == "node-0" && slices.Contains(r, "node-1") && slices.Contains(r, "node-2") {
			break
		}
	}
	c.Kill("node-1")
	c.Kill("node-2")
	clock := put(t, c.Node("node-0"), key, "v", nil, false)
	// R=2: node-0's own copy and a stand-in holding the hint.
	obj := get(t, c.Node("node-3"), key)
	if got := values(obj); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("read with two replicas down = %q", got)
	}
	if !obj.Context().Descends(clock) {
		t.Fatalf("read context %v does not cover the write %v", obj.Context(), clock)
	}
}

func TestWritableWhileEveryReplicaOfAKeyIsDown(t *testing.T) {
	c := nodetest.MakeCluster(t, 5, nodetest.DefaultConfig())
	key := "orphaned"
	replicas := c.Replicas("node-0", []byte(key))
	var survivors []string
	for _, id := range c.IDs() {
		if !slices.Contains(replicas, id) {
			survivors = append(survivors, id)
		}
	}
	for _, id := range replicas {
		c.Kill(id)
	}
	// Two nodes are up, W=2: the write must still be accepted.
	clock := put(t, c.Node(survivors[0]), key, "v1", nil, false)
	if got := values(get(t, c.Node(survivors[1]), key)); !slices.Equal(got, []string{"v1"}) {
		t.Fatalf("read with every replica down = %q", got)
	}
	put(t, c.Node(survivors[1]), key, "v2", clock, true)
	for _, id := range replicas {
		c.Restart(id)
	}
	holdsEverywhere(t, c, []string{key}, []string{"v2"})
}
