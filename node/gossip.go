package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossip is the production Membership: memberlist for liveness, plus a
// member table that memberlist's push/pull state carries between nodes so
// that members memberlist has forgotten (long dead) keep their ring place.
type gossip struct {
	ml     *memberlist.Memberlist
	table  *memberTable
	self   Member
	logger *slog.Logger

	mu       sync.Mutex // guards closed and progress
	closed   bool
	progress Progress
	stop     context.CancelFunc
}

var _ Membership = (*gossip)(nil)

// nodeMeta is what memberlist carries about each node (its Meta, at most
// memberlist.MetaMaxSize bytes).
type nodeMeta struct {
	Addr     string `json:"a"`
	PeerAddr string `json:"p"`
	Joined   int64  `json:"j"`
	Progress
}

// startGossip creates the memberlist on cfg.GossipListen and joins the
// given seeds in the background until one answers.
func startGossip(cfg Config, self Member, table *memberTable, seeds []string, logger *slog.Logger) (*gossip, error) {
	host, portStr, err := net.SplitHostPort(cfg.GossipListen)
	if err != nil {
		return nil, fmt.Errorf("gossip-listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip-listen port: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.GossipProfile == "local" {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.PushPullInterval = 2 * time.Second
	}
	mc.Name = cfg.ID
	// A member that comes back on another address (a rescheduled pod, a
	// container with a new IP) may take its name back once it has been
	// dead this long, instead of being refused until it is forgotten.
	mc.DeadNodeReclaimTime = 10 * mc.ProbeInterval
	if mc.BindAddr, err = resolveIP(host); err != nil {
		return nil, fmt.Errorf("gossip-listen: %w", err)
	}
	mc.BindPort = port
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, err = resolveIP(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("advertise: %w", err)
		}
		mc.AdvertisePort = port
	}
	mc.Logger = log.New(slogWriter{logger}, "", 0)
	g := &gossip{table: table, self: self, logger: logger}
	mc.Delegate = gossipDelegate{g}
	mc.Events = gossipEvents{g}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g.ml = ml
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	if len(seeds) > 0 {
		go g.joinLoop(ctx, seeds)
	}
	go g.reconnectLoop(ctx, 10*mc.ProbeInterval)
	return g, nil
}

// joinLoop retries joining until a seed answers, so nodes may start in any
// order.
func (g *gossip) joinLoop(ctx context.Context, seeds []string) {
	backoff := 100 * time.Millisecond
	for {
		n, err := g.ml.Join(seeds)
		// Contacting only itself (a seed list naming this node, as one
		// list for every pod does) is no join: keep trying the others.
		if n > 0 && g.ml.NumMembers() > 1 {
			g.logger.Info("joined cluster", "contacted", n)
			return
		}
		g.logger.Warn("join failed, retrying", "seeds", seeds, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// reconnectLoop tries, every interval, to join the members it sees as dead
// (not left): memberlist never probes a member it declared dead, so after
// a network cut long enough for both sides to declare each other dead,
// nothing else would ever bring them back together (Serf has the same
// loop). A member removed for good is left, and no longer tried.
func (g *gossip) reconnectLoop(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		var addrs []string
		for _, m := range g.Members() {
			if m.ID != g.self.ID && m.State == StateDead && m.GossipAddr != "" {
				addrs = append(addrs, m.GossipAddr)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		if n, _ := g.ml.Join(addrs); n > 0 {
			g.logger.Info("reconnected to members thought dead", "contacted", n)
		}
	}
}

// Members returns the table with live states from memberlist: members it
// lists are alive or suspect, others are dead unless they left.
func (g *gossip) Members() []Member {
	live := map[string]memberlist.NodeStateType{}
	for _, n := range g.ml.Members() {
		live[n.Name] = n.State
	}
	ms := g.table.list()
	for i := range ms {
		m := &ms[i]
		if m.State == StateLeft {
			continue
		}
		switch st, ok := live[m.ID]; {
		case !ok && m.Leaving:
			m.State = StateLeft // it announced its leave and is gone
		case !ok:
			m.State = StateDead
		case st == memberlist.StateSuspect:
			m.State = StateSuspect
		default:
			m.State = StateAlive
		}
	}
	return ms
}

func (g *gossip) Changes() <-chan struct{} { return g.table.changes }

// Publish updates this node's meta, which memberlist gossips to the others.
func (g *gossip) Publish(p Progress) {
	g.mu.Lock()
	if g.closed || g.progress == p {
		g.mu.Unlock()
		return
	}
	g.progress = p
	g.mu.Unlock()
	g.table.setProgress(g.self.ID, p)
	if err := g.ml.UpdateNode(5 * time.Second); err != nil {
		g.logger.Warn("cannot publish progress", "err", err)
	}
}

// Remove marks a dead member as gone for good; the member table spreads
// that through push/pull.
func (g *gossip) Remove(id string) error {
	m, ok := g.table.get(id)
	if !ok || m.State == StateLeft {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	for _, live := range g.ml.Members() {
		if live.Name == id {
			return fmt.Errorf("%w: %q", ErrMemberAlive, id)
		}
	}
	g.table.setState(id, StateLeft)
	g.logger.Info("member removed", "id", id)
	return nil
}

// Leave tells the others this node is gone for good.
func (g *gossip) Leave() error {
	g.table.setState(g.self.ID, StateLeft)
	return g.ml.Leave(5 * time.Second)
}

func (g *gossip) Shutdown() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	g.stop()
	return g.ml.Shutdown()
}

// memberFromNode turns a memberlist node into a Member; ok is false when
// its meta is not ours (another program on the gossip port).
func memberFromNode(n *memberlist.Node) (Member, bool) {
	var meta nodeMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		return Member{}, false
	}
	return Member{
		ID:         n.Name,
		Addr:       meta.Addr,
		PeerAddr:   meta.PeerAddr,
		GossipAddr: n.Address(),
		Joined:     meta.Joined,
		State:      StateAlive,
		Progress:   meta.Progress,
	}, true
}

// gossipDelegate carries our meta and member table through memberlist.
// memberlist calls it concurrently; it only touches the thread-safe table.
type gossipDelegate struct{ g *gossip }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	progress := d.g.progress
	d.g.mu.Unlock()
	b, _ := json.Marshal(nodeMeta{Addr: d.g.self.Addr, PeerAddr: d.g.self.PeerAddr, Joined: d.g.self.Joined, Progress: progress})
	if len(b) > limit {
		return nil
	}
	return b
}

func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d gossipDelegate) LocalState(join bool) []byte              { return d.g.table.marshal() }
func (d gossipDelegate) MergeRemoteState(buf []byte, join bool)   { d.g.table.merge(buf, nil) }

// gossipEvents updates the table from memberlist's view; memberlist calls
// it from one goroutine at a time.
type gossipEvents struct{ g *gossip }

func (e gossipEvents) NotifyJoin(n *memberlist.Node) {
	if m, ok := memberFromNode(n); ok {
		e.g.table.upsert(m)
		e.g.logger.Info("member up", "id", m.ID, "addr", m.Addr)
	}
}

func (e gossipEvents) NotifyUpdate(n *memberlist.Node) { e.NotifyJoin(n) }

func (e gossipEvents) NotifyLeave(n *memberlist.Node) {
	m, _ := e.g.table.get(n.Name)
	if n.State == memberlist.StateLeft || m.Leaving {
		e.g.table.setState(n.Name, StateLeft)
		e.g.logger.Info("member left", "id", n.Name)
		return
	}
	e.g.table.setState(n.Name, StateDead)
	e.g.logger.Warn("member down", "id", n.Name)
}

// slogWriter sends memberlist's log lines to slog at debug level.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(string(trimNewline(p)), "component", "memberlist")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}
