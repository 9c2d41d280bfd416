// Package nodetest runs whole clusters of nodes inside one test process,
// over the in-memory network of replication/simnet, with the faults tests
// need: partitions, killed and restarted nodes, and a verifier that compares
// every replica at the end of a scenario.
//
// Membership here is static: every node is told the same member list, and
// tests set member states by hand, so scenarios are deterministic.
package nodetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/simnet"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// Cluster is a set of in-process nodes sharing one simnet.Network.
type Cluster struct {
	t       testing.TB
	cfg     node.Config
	Net     *simnet.Network
	members *members

	mu    sync.Mutex // guards nodes
	nodes map[string]*node.Node
	dirs  map[string]string
	ids   []string
}

// MakeCluster starts n nodes named node-0 .. node-(n-1) with cfg (its ID,
// DataDir, Transport and Membership are set per node). Everything is shut
// down when the test ends.
func MakeCluster(t testing.TB, n int, cfg node.Config) *Cluster {
	t.Helper()
	c := &Cluster{
		t:       t,
		cfg:     cfg,
		Net:     simnet.New(1),
		members: newMembers(),
		nodes:   map[string]*node.Node{},
		dirs:    map[string]string{},
	}
	base := t.TempDir()
	for i := range n {
		id := fmt.Sprintf("node-%d", i)
		c.ids = append(c.ids, id)
		c.dirs[id] = filepath.Join(base, id)
		c.members.add(node.Member{ID: id, Joined: int64(i + 1), State: node.StateAlive,
			Addr: id + ":client", PeerAddr: id + ":peer", GossipAddr: id + ":gossip"})
	}
	for _, id := range c.ids {
		c.start(id)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// DefaultConfig is node.LocalConfig with quorums N=3, R=2, W=2, 64
// partitions, and a request timeout generous enough for a loaded machine
// running the race detector (tests assert outcomes, not latency).
func DefaultConfig() node.Config {
	cfg := node.LocalConfig()
	cfg.Partitions = 64
	cfg.RequestTimeout = 5 * time.Second
	return cfg
}

func (c *Cluster) start(id string) { c.startWith(id, nil) }

// startWith starts node id, letting adjust change its configuration.
func (c *Cluster) startWith(id string, adjust func(*node.Config)) {
	c.t.Helper()
	cfg := c.cfg
	cfg.ID = id
	cfg.DataDir = c.dirs[id]
	cfg.Transport = c.Net.Transport(id)
	cfg.Membership = c.members.view(id)
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	c.Net.Register(id, n)
	c.members.setState(id, node.StateAlive)
}

// AddNode starts a new node that joins the cluster last, as `dynamo
// --join` would, and returns its id.
func (c *Cluster) AddNode() string {
	c.t.Helper()
	c.mu.Lock()
	id := fmt.Sprintf("node-%d", len(c.ids))
	c.ids = append(c.ids, id)
	c.dirs[id] = filepath.Join(filepath.Dir(c.dirs[c.ids[0]]), id)
	joined := int64(len(c.ids))
	c.mu.Unlock()
	c.members.add(node.Member{ID: id, Joined: joined, State: node.StateAlive,
		Addr: id + ":client", PeerAddr: id + ":peer", GossipAddr: id + ":gossip"})
	c.startWith(id, func(cfg *node.Config) { cfg.Join = []string{c.ids[0] + ":gossip"} })
	return id
}

// Leave asks node id to leave, waits until it has handed off and left,
// and stops it.
func (c *Cluster) Leave(id string, timeout time.Duration) {
	c.t.Helper()
	n := c.Node(id)
	if err := n.Leave(); err != nil {
		c.t.Fatalf("leave %s: %v", id, err)
	}
	select {
	case <-n.Left():
	case <-time.After(timeout):
		c.t.Fatalf("%s did not hand off and leave within %s", id, timeout)
	}
	c.mu.Lock()
	delete(c.nodes, id)
	c.mu.Unlock()
	c.Net.Unregister(id)
	if err := n.Close(); err != nil {
		c.t.Errorf("close %s: %v", id, err)
	}
}

// Remove forgets the dead node id through node `via`, and waits until
// every running node has taken it out of its ring.
func (c *Cluster) Remove(via, id string, timeout time.Duration) {
	c.t.Helper()
	if err := c.Node(via).Remove(id); err != nil {
		c.t.Fatalf("remove %s via %s: %v", id, via, err)
	}
	Eventually(c.t, timeout, func() error {
		for _, r := range c.Running() {
			if n, ok := c.Lookup(r); ok && slices.Contains(n.RingMembers(), id) {
				return fmt.Errorf("%s still has %s in its ring", r, id)
			}
		}
		return nil
	})
}

// Running returns the ids of the nodes running now.
func (c *Cluster) Running() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range c.ids {
		if _, ok := c.nodes[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

// Lookup returns node id if it is running.
func (c *Cluster) Lookup(id string) (*node.Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	return n, ok
}

// WaitSettled waits until every running node works to the same ring, has
// received every partition it replicates, and has dropped what it no
// longer replicates.
func (c *Cluster) WaitSettled(timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, func() error {
		var version string
		for _, id := range c.Running() {
			n, ok := c.Lookup(id)
			if !ok {
				continue
			}
			if !n.Settled() {
				return fmt.Errorf("%s has not settled; it sees %+v", id, n.Cluster().Members)
			}
			v := n.Ring().Version
			if version != "" && v != version {
				return fmt.Errorf("%s works to ring %s, others to %s", id, v, version)
			}
			version = v
		}
		return nil
	})
}

// IDs returns the node ids in ring order.
func (c *Cluster) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

// Node returns the running node id; it fails the test if id is down.
func (c *Cluster) Node(id string) *node.Node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	if !ok {
		c.t.Fatalf("node %s is not running", id)
	}
	return n
}

// Kill stops node id abruptly: it drops off the network and its process
// state is gone; its data dir stays for Restart. Membership marks it dead.
func (c *Cluster) Kill(id string) {
	c.t.Helper()
	c.mu.Lock()
	n, ok := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.Net.Unregister(id)
	c.members.setState(id, node.StateDead)
	if err := n.Close(); err != nil {
		c.t.Errorf("close %s: %v", id, err)
	}
}

// Restart starts a killed node again on its data dir.
func (c *Cluster) Restart(id string) {
	c.t.Helper()
	c.start(id)
}

// Wipe kills node id, deletes its data dir (a replaced disk) and starts it
// again as the same member.
func (c *Cluster) Wipe(id string) {
	c.t.Helper()
	c.Kill(id)
	if err := os.RemoveAll(c.dirs[id]); err != nil {
		c.t.Fatalf("wipe %s: %v", id, err)
	}
	c.start(id)
}

// SetState sets the membership state every node sees for id.
func (c *Cluster) SetState(id, state string) { c.members.setState(id, state) }

// Partition splits the network (see simnet.Network.Partition).
func (c *Cluster) Partition(groups ...[]string) { c.Net.Partition(groups...) }

// Isolate cuts node id off from every other node.
func (c *Cluster) Isolate(id string) { c.Net.Isolate(id) }

// Heal removes every network fault.
func (c *Cluster) Heal() { c.Net.Heal() }

// Shutdown closes every running node.
func (c *Cluster) Shutdown() {
	c.mu.Lock()
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.Kill(id)
	}
}

// Replicas returns the preference list of key as node `via` sees it.
func (c *Cluster) Replicas(via string, key []byte) []string {
	return c.Node(via).KeyInfo(key).PreferenceList
}

// Local returns each running replica's own copy of key.
func (c *Cluster) Local(key []byte) map[string]*version.Object {
	c.t.Helper()
	out := map[string]*version.Object{}
	for _, id := range c.Replicas(c.anyRunning(), key) {
		c.mu.Lock()
		n, ok := c.nodes[id]
		c.mu.Unlock()
		if !ok {
			continue
		}
		obj, err := n.GetLocal(key)
		if err != nil {
			c.t.Fatalf("local read of %q on %s: %v", key, id, err)
		}
		out[id] = obj
	}
	return out
}

// Converged reports whether every replica of key holds an equal copy.
func (c *Cluster) Converged(key []byte) bool {
	var first *version.Object
	i := 0
	for _, obj := range c.Local(key) {
		if i > 0 && !first.Equal(obj) {
			return false
		}
		first = obj
		i++
	}
	return true
}

// VerifyReplicas fails the test unless every replica of every key holds an
// equal copy within timeout.
func (c *Cluster) VerifyReplicas(keys [][]byte, timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, func() error {
		for _, k := range keys {
			if !c.Converged(k) {
				return fmt.Errorf("replicas of %q differ", k)
			}
		}
		return nil
	})
}

func (c *Cluster) anyRunning() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.ids {
		if _, ok := c.nodes[id]; ok {
			return id
		}
	}
	c.t.Fatal("no node is running")
	return ""
}

// Eventually polls cond until it returns nil or timeout passes, then fails
// the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		timer := time.NewTimer(delay)
		<-timer.C
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// Ctx returns a context for one client request in a test.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
