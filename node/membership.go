package node

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
)

// Member is one node of the cluster as membership knows it.
type Member struct {
	ID         string `json:"id"`
	Addr       string `json:"addr"`
	PeerAddr   string `json:"peer_addr"`
	GossipAddr string `json:"gossip_addr"`
	// Joined is when the member's data dir was created (Unix nanoseconds).
	// The ring orders members by it, so every node builds the same ring.
	Joined int64 `json:"joined"`
	// State is alive, suspect, dead or left.
	State string `json:"state"`
	// Progress is what the member last published about its ring.
	Progress
}

// Progress is what each member publishes about itself so that others can
// tell when data has finished following a ring change.
type Progress struct {
	// RingVersion is the version of the ring the member works to.
	RingVersion uint64 `json:"rv,omitempty"`
	// Pending is how many partitions it is still receiving.
	Pending int `json:"pn,omitempty"`
	// Owned is how many partitions it owns (is first in the preference list of).
	Owned int `json:"ow,omitempty"`
	// BytesMoved counts the partition data it has received.
	BytesMoved int64 `json:"bm,omitempty"`
	// Leaving is set once it was asked to leave: it is out of the ring
	// and hands off its data before it goes.
	Leaving bool `json:"lv,omitempty"`
	// Hints is how many hints it holds for other nodes.
	Hints int `json:"hp,omitempty"`
	// Rate and P99 are its client requests per second and their 99th
	// percentile latency in seconds, over its last load window.
	Rate float64 `json:"rq,omitempty"`
	P99  float64 `json:"p9,omitempty"`
}

// Membership tells a node who is in the cluster. Implementations must be
// safe for concurrent use.
type Membership interface {
	// Members returns every member known, this node included, down ones
	// too (they keep their place in the ring until they leave).
	Members() []Member
	// Changes receives a value whenever Members may have changed; sends
	// coalesce, so a slow reader sees one value for many changes.
	Changes() <-chan struct{}
	// Publish tells the other members this node's progress.
	Publish(Progress)
	// Remove forgets a member that died for good: every node drops it from
	// the ring. It reports ErrUnknownMember or ErrMemberAlive.
	Remove(id string) error
	// Leave announces that this node leaves the cluster for good.
	Leave() error
	// Shutdown stops taking part without leaving: the others see this node
	// go down, and it keeps its place in the ring.
	Shutdown() error
}

// inRing reports whether m owns a place in the ring.
func (m Member) inRing() bool { return m.State != StateLeft && !m.Leaving }

// memberTable is the set of members a node remembers, including those
// memberlist has forgotten: a member stays until it leaves, so the ring
// does not shift while a node is merely down.
type memberTable struct {
	mu      sync.Mutex // guards members
	members map[string]Member
	changes chan struct{}
}

func newMemberTable() *memberTable {
	return &memberTable{members: map[string]Member{}, changes: make(chan struct{}, 1)}
}

// upsert records m; a record from an older incarnation (smaller Joined)
// never replaces a newer one. It reports whether anything changed.
func (t *memberTable) upsert(m Member) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.members[m.ID]
	if ok && (old == m || old.Joined > m.Joined) {
		return false
	}
	if ok && old.State == StateLeft && old.Joined == m.Joined {
		return false // leaving is for good for that incarnation
	}
	t.members[m.ID] = m
	t.notify()
	return true
}

// setProgress records what a known member published.
func (t *memberTable) setProgress(id string, p Progress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[id]
	if !ok || m.Progress == p {
		return
	}
	m.Progress = p
	t.members[id] = m
	t.notify()
}

// get returns the member id.
func (t *memberTable) get(id string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[id]
	return m, ok
}

// setState changes the state of a known member.
func (t *memberTable) setState(id, state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.members[id]
	if !ok || m.State == state || m.State == StateLeft {
		return
	}
	m.State = state
	t.members[id] = m
	t.notify()
}

func (t *memberTable) notify() {
	select {
	case t.changes <- struct{}{}:
	default:
	}
}

// list returns the members in ring order: by Joined, then ID.
func (t *memberTable) list() []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.members))
	for _, m := range t.members {
		out = append(out, m)
	}
	t.mu.Unlock()
	sortMembers(out)
	return out
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Joined, b.Joined), cmp.Compare(a.ID, b.ID))
	})
}

// marshal encodes the table for gossip and for the data dir. States other
// than left are local observations and travel as dead: the receiver asks
// memberlist for the truth.
func (t *memberTable) marshal() []byte {
	ms := t.list()
	for i := range ms {
		if ms[i].State != StateLeft {
			ms[i].State = StateDead
		}
	}
	b, _ := json.Marshal(ms) // plain strings and ints: cannot fail
	return b
}

// merge folds a marshalled table into t, keeping what t knows of live
// states; it reports whether anything changed.
func (t *memberTable) merge(data []byte, observe func(Member) Member) bool {
	var ms []Member
	if json.Unmarshal(data, &ms) != nil {
		return false
	}
	changed := false
	for _, m := range ms {
		if m.ID == "" {
			continue
		}
		t.mu.Lock()
		old, known := t.members[m.ID]
		t.mu.Unlock()
		if known && old.Joined == m.Joined && m.State != StateLeft {
			continue // same incarnation: our own observation of its state wins
		}
		if observe != nil {
			m = observe(m)
		}
		if t.upsert(m) {
			changed = true
		}
	}
	return changed
}
