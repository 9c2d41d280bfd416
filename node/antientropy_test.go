package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// aeConfig is a cluster that only anti-entropy can heal: no hints, and
// rounds every 100ms.
func aeConfig() node.Config {
	cfg := nodetest.DefaultConfig()
	cfg.HintedHandoff = false
	cfg.AntiEntropyInterval = 100 * time.Millisecond
	return cfg
}

// counter sums a counter's series in n's registry.
func counter(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	families, err := n.Registry().Gather()
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

// A replica whose data dir is wiped comes back as the same member and gets
// every key it replicates from the others, with hints off and no client
// read to trigger read repair.
func TestWipedReplicaRefilledByAntiEntropy(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, aeConfig())
	keys := keysN("wiped", 300)
	for i, k := range keys {
		put(t, c.Node(c.IDs()[i%3]), k, "v", nil, false)
	}
	holdsEverywhere(t, c, keys, []string{"v"})

	c.Wipe("node-2")
	start := time.Now()
	holdsEverywhere(t, c, keys, []string{"v"})
	t.Logf("node-2 held all %d keys again %.2fs after its data dir was wiped; it repaired %.0f keys itself",
		len(keys), time.Since(start).Seconds(), counter(t, c.Node("node-2"), "dynamo_antientropy_keys_repaired_total"))
}

// Writes a replica missed while partitioned away, with hints off, reach it
// once the partition heals.
func TestPartitionedReplicaCatchesUpByAntiEntropy(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, aeConfig())
	keys := keysN("missed", 100)
	c.Isolate("node-2")
	for _, k := range keys {
		put(t, c.Node("node-0"), k, "while away", nil, false)
	}
	for _, k := range keys {
		if obj, _ := c.Node("node-2").GetLocal([]byte(k)); obj != nil {
			t.Fatalf("node-2 got %q while isolated", k)
		}
	}
	c.Heal()
	holdsEverywhere(t, c, keys, []string{"while away"})
}

// A key deleted while one replica was partitioned away stays deleted when
// that replica returns with the old value, also after the grace period
// passed on the others: the tombstone is kept until every replica has
// it, and purged everywhere after that without the value coming back.
func TestDeleteWhilePartitionedStaysDeleted(t *testing.T) {
	cfg := aeConfig()
	cfg.TombstoneGrace = 300 * time.Millisecond
	c := nodetest.MakeCluster(t, 3, cfg)
	key := "deleted-while-away"
	clock := put(t, c.Node("node-0"), key, "old", nil, false)
	holdsEverywhere(t, c, []string{key}, []string{"old"})

	c.Isolate("node-2")
	if _, err := c.Node("node-0").Delete(nodetest.Ctx(t), node.DeleteRequest{Key: []byte(key), Context: clock, HasContext: true}); err != nil {
		t.Fatal(err)
	}
	// Well past the grace, with the two reachable replicas exchanging
	// every 100ms: no tombstone may go while node-2 lacks it.
	deadline := time.Now().Add(10 * cfg.TombstoneGrace)
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
	for time.Now().Before(deadline) {
		for _, id := range []string{"node-0", "node-1"} {
			if n := counter(t, c.Node(id), "dynamo_tombstones_purged_total"); n != 0 {
				t.Fatalf("%s purged a tombstone while a replica could not have it", id)
			}
			obj, err := c.Node(id).GetLocal([]byte(key))
			if err != nil || obj == nil || obj.Live() {
				t.Fatalf("%s holds %v (%v), want the tombstone", id, obj, err)
			}
		}
		<-sample.C
	}
	if obj, _ := c.Node("node-2").GetLocal([]byte(key)); !obj.Live() {
		t.Fatal("node-2 lost the old value while isolated")
	}

	c.Heal()
	// The tombstone reaches node-2, then every replica purges it.
	nodetest.Eventually(t, converge, func() error {
		for _, id := range c.IDs() {
			if n := counter(t, c.Node(id), "dynamo_tombstones_purged_total"); n == 0 {
				return fmt.Errorf("%s has not purged the tombstone yet", id)
			}
		}
		return nil
	})
	for _, id := range c.IDs() {
		if obj, _ := c.Node(id).GetLocal([]byte(key)); obj != nil {
			t.Errorf("%s still holds %v after purging", id, obj)
		}
		if obj := get(t, c.Node(id), key); obj.Live() {
			t.Errorf("read through %s brought back %q", id, values(obj))
		}
	}
	// Further rounds bring nothing back either.
	rounds := counter(t, c.Node("node-0"), "dynamo_antientropy_exchanges_total")
	nodetest.Eventually(t, converge, func() error {
		if counter(t, c.Node("node-0"), "dynamo_antientropy_exchanges_total") < rounds+10 {
			return fmt.Errorf("waiting for more exchanges")
		}
		return nil
	})
	for _, id := range c.IDs() {
		if obj, _ := c.Node(id).GetLocal([]byte(key)); obj != nil {
			t.Errorf("%s holds %v again", id, obj)
		}
	}
	if obj := get(t, c.Node("node-1"), key); obj.Live() {
		t.Errorf("read after purging = %q", values(obj))
	}
}
