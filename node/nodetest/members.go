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
	id      string
	changes chan struct{}
}

var _ node.Membership = (*view)(nil)

func (m *members) view(id string) *view {
	v := &view{m: m, id: id, changes: make(chan struct{}, 1)}
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

func (v *view) Publish(p node.Progress) {
	v.m.mu.Lock()
	for i := range v.m.list {
		if v.m.list[i].ID == v.id {
			v.m.list[i].Progress = p
		}
	}
	v.m.mu.Unlock()
	v.m.notify()
}

func (v *view) Remove(id string) error {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	for i := range v.m.list {
		m := &v.m.list[i]
		if m.ID != id {
			continue
		}
		switch m.State {
		case node.StateLeft:
			return node.ErrUnknownMember
		case node.StateAlive, node.StateSuspect:
			return node.ErrMemberAlive
		}
		m.State = node.StateLeft
		go v.m.notify()
		return nil
	}
	return node.ErrUnknownMember
}

func (v *view) Leave() error {
	v.m.setState(v.id, node.StateLeft)
	return nil
}
