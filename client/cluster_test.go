package client_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dynamo-kv/dynamo/api"
	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/simnet"
)

// localNodes is a cluster of in-process nodes for tests and examples: each
// node serves the client API on its own loopback HTTP server, as `dynamo`
// does, while replicas talk over the in-memory network of simnet.
// Membership is a fixed list every node shares. Examples have no testing.T,
// so failures to start panic.
type localNodes struct {
	dir     string
	net     *simnet.Network
	members *staticMembers

	mu      sync.Mutex // guards nodes and servers
	nodes   []*node.Node
	servers []*httptest.Server

	ids   []string
	addrs []string // host:port of each node's client API
	// keyRequests counts the /keys requests each node's HTTP server got.
	keyRequests []atomic.Int64
}

// startLocalNodes starts n nodes named node-0 .. node-(n-1) with N=3, R=2,
// W=2 (capped at n) and 64 partitions; adjust, when not nil, changes the
// configuration every node gets.
func startLocalNodes(n int, adjust func(*node.Config)) *localNodes {
	dir, err := os.MkdirTemp("", "dynamo-client-")
	if err != nil {
		panic(err)
	}
	c := &localNodes{dir: dir, net: simnet.New(1), members: &staticMembers{}, keyRequests: make([]atomic.Int64, n)}
	// The servers' addresses must be known before the nodes start, since
	// membership tells them; the handlers come once the nodes exist.
	handlers := make([]atomic.Pointer[http.Handler], n)
	for i := range n {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/keys/") {
				c.keyRequests[i].Add(1)
			}
			(*handlers[i].Load()).ServeHTTP(w, r)
		}))
		id := fmt.Sprintf("node-%d", i)
		c.ids = append(c.ids, id)
		c.addrs = append(c.addrs, srv.Listener.Addr().String())
		c.servers = append(c.servers, srv)
		c.members.list = append(c.members.list, node.Member{
			ID: id, Addr: srv.Listener.Addr().String(), PeerAddr: id + ":peer", GossipAddr: id + ":gossip",
			Joined: int64(i + 1), State: node.StateAlive,
		})
	}
	for i, id := range c.ids {
		cfg := node.LocalConfig()
		cfg.ID = id
		cfg.DataDir = filepath.Join(dir, id)
		cfg.Partitions = 64
		cfg.AntiEntropyInterval = 0
		cfg.Transport = c.net.Transport(id)
		cfg.Membership = c.members.view()
		if adjust != nil {
			adjust(&cfg)
		}
		nd, err := node.New(cfg)
		if err != nil {
			c.Close()
			panic(fmt.Sprintf("start %s: %v", id, err))
		}
		c.net.Register(id, nd)
		c.nodes = append(c.nodes, nd)
		h := api.New(nd, api.Options{})
		handlers[i].Store(&h)
	}
	for _, srv := range c.servers {
		srv.Start()
	}
	return c
}

// Addrs returns the client address of every node, host:port.
func (c *localNodes) Addrs() []string { return slices.Clone(c.addrs) }

// Kill stops node i abruptly: its HTTP server refuses connections, it drops
// off the network, and the others see it dead.
func (c *localNodes) Kill(i int) {
	c.mu.Lock()
	srv := c.servers[i]
	c.servers[i] = nil
	var nd *node.Node
	if i < len(c.nodes) {
		nd, c.nodes[i] = c.nodes[i], nil
	}
	c.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
	c.net.Unregister(c.ids[i])
	c.members.setState(c.ids[i], node.StateDead)
	if nd != nil {
		nd.Close()
	}
}

// Close stops every node and removes the data.
func (c *localNodes) Close() {
	for i := range c.servers {
		c.Kill(i)
	}
	os.RemoveAll(c.dir)
}

// KeyRequests returns how many /keys requests each node's server got.
func (c *localNodes) KeyRequests() []int64 {
	out := make([]int64, len(c.keyRequests))
	for i := range c.keyRequests {
		out[i] = c.keyRequests[i].Load()
	}
	return out
}

// staticMembers is a membership every node shares: one fixed list whose
// states the test sets.
type staticMembers struct {
	mu   sync.Mutex // guards list and subs
	list []node.Member
	subs []chan struct{}
}

func (m *staticMembers) view() node.Membership {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs = append(m.subs, ch)
	m.mu.Unlock()
	return &memberView{m: m, changes: ch}
}

func (m *staticMembers) setState(id, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.list {
		if m.list[i].ID == id {
			m.list[i].State = state
		}
	}
	for _, ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// memberView is one node's handle on staticMembers.
type memberView struct {
	m       *staticMembers
	changes chan struct{}
}

var _ node.Membership = (*memberView)(nil)

var errFixedMembership = errors.New("the test membership is fixed")

func (v *memberView) Members() []node.Member {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	return slices.Clone(v.m.list)
}

func (v *memberView) Changes() <-chan struct{} { return v.changes }
func (v *memberView) Publish(node.Progress)    {}
func (v *memberView) Remove(string) error      { return errFixedMembership }
func (v *memberView) Leave() error             { return errFixedMembership }
func (v *memberView) Shutdown() error          { return nil }
