package node

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

// fuzzGossip is a gossip with no memberlist: enough for the delegate and
// event callbacks, which only touch the member table.
func fuzzGossip(self Member) *gossip {
	g := &gossip{table: newMemberTable(), self: self, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	g.table.upsert(self)
	return g
}

var fuzzSelf = Member{ID: "node-a", Addr: "10.0.0.1:8080", PeerAddr: "10.0.0.1:8081", Joined: 1715000000000000000, State: StateAlive}

// FuzzNodeMeta feeds memberlist's node meta, which any process on the
// gossip port can send, to the join and update events. Meta that is ours
// makes a member carrying exactly what it says, and what NodeMeta writes for
// that member reads back the same.
func FuzzNodeMeta(f *testing.F) {
	published := Progress{RingVersion: 1 << 63, Pending: 3, Owned: 12, BytesMoved: 1 << 40, Hints: 7, Rate: 1234.5, P99: 0.0125}
	for _, self := range []Member{fuzzSelf, {ID: "n", Progress: published}, {ID: "n", Addr: "[::1]:1", Progress: Progress{Leaving: true, Rate: 5e-324}}} {
		g := fuzzGossip(self)
		g.progress = self.Progress
		f.Add(self.ID, gossipDelegate{g}.NodeMeta(memberlist.MetaMaxSize))
	}
	f.Add("x", []byte(`{"a":1}`))
	f.Add("x", []byte(`{"rv":-1,"p9":1e999}`))
	f.Add("", []byte(`null`))
	f.Fuzz(func(t *testing.T, name string, meta []byte) {
		g := fuzzGossip(fuzzSelf)
		n := &memberlist.Node{Name: name, Addr: net.IPv4(10, 0, 0, 2), Port: 7946, Meta: meta}
		gossipEvents{g}.NotifyJoin(n)
		gossipEvents{g}.NotifyUpdate(n)
		m, ok := memberFromNode(n)
		if !ok {
			if got, _ := g.table.get(name); name != fuzzSelf.ID && got != (Member{}) {
				t.Fatalf("meta %q that is not ours added %+v", meta, got)
			}
			return
		}
		if m.ID != name || m.GossipAddr != "10.0.0.2:7946" || m.State != StateAlive {
			t.Fatalf("meta %q made %+v", meta, m)
		}
		if got, _ := g.table.get(name); name != fuzzSelf.ID && got != m {
			t.Fatalf("the table holds %+v, want %+v", got, m)
		}

		// What a node publishes about that member reads back as it.
		other := fuzzGossip(Member{ID: m.ID, Addr: m.Addr, PeerAddr: m.PeerAddr, Joined: m.Joined})
		other.progress = m.Progress
		out := gossipDelegate{other}.NodeMeta(memberlist.MetaMaxSize)
		if len(out) > memberlist.MetaMaxSize {
			t.Fatalf("NodeMeta wrote %d bytes, over the limit", len(out))
		}
		if out == nil {
			return // too long to publish: the limit is memberlist's
		}
		back, ok := memberFromNode(&memberlist.Node{Name: name, Addr: n.Addr, Port: n.Port, Meta: out})
		if !ok || back != m {
			t.Fatalf("published %s for %+v, read back %+v", out, m, back)
		}
	})
}

// FuzzMergeRemoteState feeds push/pull state, and user messages, to the
// delegate as memberlist would from any peer. Merging never panics or keeps
// an unnamed member, merging the same state again changes nothing (peers
// resend it every push/pull), and the state this node then sends merges into
// an empty table as the same members.
func FuzzMergeRemoteState(f *testing.F) {
	table := newMemberTable()
	table.upsert(fuzzSelf)
	table.upsert(Member{ID: "node-b", Addr: "10.0.0.2:8080", Joined: 2, State: StateSuspect, Progress: Progress{Pending: 2, Rate: 3.5}})
	table.upsert(Member{ID: "node-c", Joined: 3, State: StateLeft})
	f.Add(table.marshal(), false)
	f.Add(newMemberTable().marshal(), true)
	f.Add([]byte(`[{"id":"node-a","joined":9,"state":"left"},{"id":"node-a","joined":9,"addr":"x"},{"id":""}]`), true)
	f.Add([]byte(`[{"id":"node-b","joined":1},{"id":"node-b","joined":2,"state":"left"},{"id":"node-b","joined":2}]`), false)
	f.Add([]byte(`{"id":"node-a"}`), false)
	f.Fuzz(func(t *testing.T, buf []byte, join bool) {
		g := fuzzGossip(fuzzSelf)
		g.table.upsert(Member{ID: "node-b", Joined: 2, State: StateAlive})
		d := gossipDelegate{g}
		d.NotifyMsg(buf)
		d.MergeRemoteState(buf, join)

		merged := g.table.list()
		for _, m := range merged {
			if m.ID == "" {
				t.Fatalf("merging %q kept a member without an id: %+v", buf, m)
			}
		}
		if _, ok := g.table.get(fuzzSelf.ID); !ok {
			t.Fatalf("merging %q forgot this node", buf)
		}
		if g.table.merge(buf, nil) {
			t.Fatalf("merging %q twice changed the table:\n%+v\n%+v", buf, merged, g.table.list())
		}

		sent := d.LocalState(join)
		var decoded []Member
		if err := json.Unmarshal(sent, &decoded); err != nil {
			t.Fatalf("LocalState sent %q: %v", sent, err)
		}
		fresh := newMemberTable()
		fresh.merge(sent, nil)
		got := fresh.list()
		if len(got) != len(merged) {
			t.Fatalf("sent %d members, %d arrived", len(merged), len(got))
		}
		for i, m := range merged {
			if m.State != StateLeft {
				m.State = StateDead // live states travel as dead
			}
			if got[i] != m {
				t.Fatalf("member %d: sent %+v, arrived %+v", i, m, got[i])
			}
		}
	})
}
