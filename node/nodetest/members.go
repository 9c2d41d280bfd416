package nodetest

import (
	"slices"
	"sync"

	"github.com/dynamo-kv/dynamo/node"
)

// members is a membership every node of a Cluster shares: one list, states
// set by the test.
type members struct {
	mu    sync.Mutex // guards list and views
	list  []node.Member
	views []*view
}

func newMembers() *members { return &members{} }

func (m *members) add(mem node.Member) {
	m.mu.Lock()
	m.list = append(m.list, mem)
	m.mu.Unlock()
	m.notify()
}

func (m *members) setState(id, state string) {
	m.mu.Lock()
	for i := range m.list {
		if m.list[i].ID == id {
			m.list[i].State = state
		}
	}
	m.mu.Unlock()
	m.notify()
}

func (m *members) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.views {
		select {
		case v.changes <- struct{}{}:
		default:
		}
	}
}

// view is one node's handle on the shared membership.
type view struct {
	m       *members
	changes chan struct{}
}

var _ node.Membership = (*view)(nil)

func (m *members) view() *view {
	v := &view{m: m, changes: make(chan struct{}, 1)}
	m.mu.Lock()
	m.views = append(m.views, v)
	m.mu.Unlock()
	return v
}

func (v *view) Members() []node.Member {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	return slices.Clone(v.m.list)
}

func (v *view) Changes() <-chan struct{} { return v.changes }

func (v *view) Shutdown() error { return nil }
