package node_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// A stand-in that was away while a key was deleted and its tombstone purged
// everywhere must not bring the deleted value back with the hint it kept
// (found by the fault suite): hints of values older than the tombstone
// grace are dropped, not delivered.
func TestHintAfterPurgeDoesNotResurrect(t *testing.T) {
	cfg := nodetest.DefaultConfig()
	cfg.AntiEntropyInterval = 100 * time.Millisecond
	cfg.TombstoneGrace = time.Second
	c := nodetest.MakeCluster(t, 5, cfg)

	// A key whose replicas are node-0..node-2, so node-3 and node-4 are
	// its stand-ins.
	var (
		key      string
		replicas []string
	)
	for i := 0; ; i++ {
		key = fmt.Sprintf("k-%d", i)
		replicas = c.Replicas("node-0", []byte(key))
		if !slices.Contains(replicas, "node-3") && !slices.Contains(replicas, "node-4") {
			break
		}
	}
	a, b, cut := replicas[0], replicas[1], replicas[2]

	// A write while one replica is cut off leaves a hint on a stand-in.
	c.Isolate(cut)
	clock, err := c.Node(a).Put(nodetest.Ctx(t), node.PutRequest{Key: []byte(key), Value: []byte("v1")})
	if err != nil {
		t.Fatal(err)
	}
	var standIn string
	nodetest.Eventually(t, 5*time.Second, func() error {
		for _, id := range []string{"node-3", "node-4"} {
			if h, _ := c.Node(id).PendingHints(); h[cut] > 0 {
				standIn = id
				return nil
			}
		}
		return fmt.Errorf("no stand-in holds a hint for %s", cut)
	})

	// The stand-in goes away with its hint; the key is deleted on all
	// three replicas, and anti-entropy purges the tombstone after the grace.
	c.Kill(standIn)
	c.Heal()
	if _, err := c.Node(b).Delete(nodetest.Ctx(t), node.DeleteRequest{Key: []byte(key), Context: clock, HasContext: true, W: 3}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, func() error {
		for _, id := range replicas {
			if obj, _ := c.Node(id).GetLocal([]byte(key)); obj != nil {
				return fmt.Errorf("%s still holds %v", id, obj)
			}
		}
		return nil
	})

	// The stand-in returns: its hint is dropped, not delivered.
	c.Restart(standIn)
	nodetest.Eventually(t, 20*time.Second, func() error {
		if h, err := c.Node(standIn).PendingHints(); err != nil || h[cut] > 0 {
			return fmt.Errorf("%s still holds %d hints for %s (%v)", standIn, h[cut], cut, err)
		}
		return nil
	})
	for _, id := range replicas {
		if obj, _ := c.Node(id).GetLocal([]byte(key)); obj.Live() {
			t.Errorf("resurrected: %s holds %q after the acknowledged delete", id, obj.Siblings[0].Value)
		}
	}
}

// A hint is delivered only if its value will still be younger than half
// the tombstone grace when the delivery's deadline passes: one read in
// time but delivered later (it waited its turn in the background queue)
// could land after the delete of its value was purged. Here every hint is
// too old by its deadline (grace 2s, request timeout 2s): it is dropped,
// and the returning replica gets nothing from it.
func TestHintTooOldByItsDeadlineIsDropped(t *testing.T) {
	cfg := nodetest.DefaultConfig()
	cfg.TombstoneGrace = 2 * time.Second
	cfg.RequestTimeout = 2 * time.Second
	cfg.AntiEntropyInterval = 0
	c := nodetest.MakeCluster(t, 5, cfg)
	key := "k"
	replicas := c.Replicas("node-0", []byte(key))
	a, cut := replicas[0], replicas[2]

	c.Isolate(cut)
	if _, err := c.Node(a).Put(nodetest.Ctx(t), node.PutRequest{Key: []byte(key), Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	hinted := func() int {
		n := 0
		for _, id := range c.Running() {
			h, _ := c.Node(id).PendingHints()
			n += h[cut]
		}
		return n
	}
	nodetest.Eventually(t, 5*time.Second, func() error {
		if hinted() == 0 {
			return fmt.Errorf("no hint held for %s", cut)
		}
		return nil
	})
	c.Heal()
	nodetest.Eventually(t, 20*time.Second, func() error {
		if n := hinted(); n > 0 {
			return fmt.Errorf("%d hints for %s still held", n, cut)
		}
		return nil
	})
	if obj, _ := c.Node(cut).GetLocal([]byte(key)); obj != nil {
		t.Fatalf("%s got %v from a hint too old to deliver", cut, obj)
	}
}

// A write a stand-in took while every replica of its key was down lives
// only in hints: they are its sole copies, and are delivered whatever
// their age (found by the fault suite's container soak, where such a
// write was lost once its hints were dropped as stale). Here every other
// hint would be too old by its deadline (grace 2s, request timeout 2s).
func TestSoleHintsAreNeverDroppedForTheirAge(t *testing.T) {
	cfg := nodetest.DefaultConfig()
	cfg.TombstoneGrace = 2 * time.Second
	cfg.RequestTimeout = 2 * time.Second
	cfg.AntiEntropyInterval = 0
	c := nodetest.MakeCluster(t, 5, cfg)
	var (
		key      string
		replicas []string
	)
	for i := 0; ; i++ {
		key = fmt.Sprintf("sole-%d", i)
		replicas = c.Replicas("node-0", []byte(key))
		if !slices.Contains(replicas, "node-0") {
			break
		}
	}
	c.Partition(replicas)
	if _, err := c.Node("node-0").Put(nodetest.Ctx(t), node.PutRequest{Key: []byte(key), Value: []byte("only-in-hints")}); err != nil {
		t.Fatalf("a write with every replica down: %v", err)
	}
	c.Heal()
	nodetest.Eventually(t, 20*time.Second, func() error {
		for _, id := range replicas {
			obj, err := c.Node(id).GetLocal([]byte(key))
			if err != nil || !slices.Equal(values(obj), []string{"only-in-hints"}) {
				return fmt.Errorf("%s holds %v (%v)", id, values(obj), err)
			}
		}
		return nil
	})
}
