package version

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// checkObject fails the test unless o keeps the Object invariants: a valid
// clock, siblings strictly sorted by dot, and every sibling covered.
func checkObject(t testing.TB, o *Object) {
	t.Helper()
	if o == nil {
		return
	}
	if !o.Clock.valid() {
		t.Fatalf("invalid clock %v", o.Clock)
	}
	for i, s := range o.Siblings {
		if !o.Clock.Covers(s.Dot) {
			t.Fatalf("clock %v does not cover sibling %v", o.Clock, s.Dot)
		}
		if i > 0 && !dotLess(o.Siblings[i-1].Dot, s.Dot) {
			t.Fatalf("siblings unsorted or duplicated: %v", dotsOf(o))
		}
	}
}

func dotsOf(o *Object) []Dot {
	if o == nil {
		return nil
	}
	out := make([]Dot, len(o.Siblings))
	for i, s := range o.Siblings {
		out[i] = s.Dot
	}
	return out
}

func wantDots(t testing.TB, o *Object, want ...Dot) {
	t.Helper()
	checkObject(t, o)
	if got := dotsOf(o); !slices.Equal(got, want) {
		t.Fatalf("siblings %v, want %v", got, want)
	}
}

func write(o *Object, a Actor, ctx Clock, value string) (*Object, Dot) {
	return o.Write(a, ctx, []byte(value), "text/plain", t0)
}

func TestWriteOnNil(t *testing.T) {
	var o *Object
	got, dot := o.Write(actA, nil, []byte("v1"), "text/plain", t0)
	if want := (Dot{actA, 1}); dot != want {
		t.Fatalf("dot %v, want %v", dot, want)
	}
	wantDots(t, got, dot)
	if !got.Clock.Equal(Clock{{actA, 1}}) {
		t.Fatalf("clock %v", got.Clock)
	}
	s := got.Siblings[0]
	if string(s.Value) != "v1" || s.ContentType != "text/plain" || s.Modified != t0.UnixNano() {
		t.Fatalf("sibling %+v", s)
	}
	if !got.Live() || !got.Modified().Equal(t0) {
		t.Fatalf("Live=%v Modified=%v", got.Live(), got.Modified())
	}
}

func TestWriteWithoutContextMakesSibling(t *testing.T) {
	o1, d1 := write(nil, actA, nil, "v1")
	o2, d2 := write(o1, actA, nil, "v2")
	wantDots(t, o2, d1, d2)
	if d2 != (Dot{actA, 2}) {
		t.Fatalf("second dot %v", d2)
	}
	// Another coordinator holding the same copy adds its own sibling.
	o3, d3 := write(o2, actB, nil, "v3")
	wantDots(t, o3, d1, d2, d3)
	if d3 != (Dot{actB, 1}) {
		t.Fatalf("dot %v", d3)
	}
	wantDots(t, o1, d1) // inputs untouched
}

func TestWriteWithContextSupersedes(t *testing.T) {
	o, _ := write(nil, actA, nil, "v1")
	o, _ = write(o, actB, nil, "v2")
	o, _ = write(o, actA, nil, "v3")
	before := o.Clock
	got, dot := write(o, actC, o.Context(), "resolved")
	wantDots(t, got, dot)
	if !got.Clock.Descends(before) || !got.Clock.Covers(dot) {
		t.Fatalf("clock %v lost history %v", got.Clock, before)
	}
	if !got.Dominates(o) || o.Dominates(got) {
		t.Fatal("the write should strictly dominate the old copy")
	}
}

func TestWriteStaleContext(t *testing.T) {
	// Client X reads {a:1}. Meanwhile a:2 is written without context and
	// b:1 arrives from another replica. X then writes with its stale context:
	// a:1 (seen) goes, a:2 and b:1 (not seen) stay.
	o, d1 := write(nil, actA, nil, "v1")
	stale := o.Context()
	o, d2 := write(o, actA, nil, "v2")
	other, db := write(nil, actB, nil, "vb")
	o = Merge(o, other)
	wantDots(t, o, d1, d2, db)

	got, dx := write(o, actA, stale, "vx")
	if dx != (Dot{actA, 3}) {
		t.Fatalf("dot %v, want a:3", dx)
	}
	wantDots(t, got, d2, dx, db)

	// A stale context that saw a:1 and a:2 but not b:1.
	o2, _ := write(nil, actA, nil, "v1")
	o2, _ = write(o2, actA, nil, "v2")
	stale2 := o2.Context()
	o2 = Merge(o2, other)
	got2, dy := write(o2, actA, stale2, "vy")
	wantDots(t, got2, dy, db)
}

func TestWriteContextAheadOfCoordinator(t *testing.T) {
	// The client read from a replica that has seen b:1; the coordinator has
	// not. Its write supersedes b:1 everywhere once merged.
	base, _ := write(nil, actA, nil, "va")
	ahead, _ := write(base, actB, nil, "vb")
	got, dx := write(base, actA, ahead.Context(), "vx")
	wantDots(t, got, dx)
	if !got.Clock.Descends(ahead.Clock) {
		t.Fatalf("clock %v did not absorb context %v", got.Clock, ahead.Clock)
	}
	wantDots(t, Merge(got, ahead), dx)
	wantDots(t, Merge(ahead, got), dx)
}

func TestWriteRetryIsNotDuplicated(t *testing.T) {
	o, _ := write(nil, actA, nil, "v1")
	ctx := o.Context()
	o1, d1 := write(o, actA, ctx, "v2")
	// The client did not see the reply and retries with the same context.
	o2, d2 := write(o1, actA, ctx, "v2")
	wantDots(t, o2, d2)
	if !o2.Clock.Covers(d1) {
		t.Fatal("the retried dot must stay covered")
	}
	// Same bytes with another content type is a different value.
	o3, d3 := o2.Write(actA, nil, []byte("v2"), "application/json", t0)
	wantDots(t, o3, d2, d3)
	// A different value without context stays a sibling.
	o4, d4 := write(o3, actA, nil, "v3")
	wantDots(t, o4, d2, d3, d4)
}

func TestWriteDotCounters(t *testing.T) {
	var o *Object
	last := map[Actor]uint64{}
	for i, a := range []Actor{actA, actA, actB, actA, actB, actC, actC, actA} {
		var d Dot
		o, d = write(o, a, o.Context(), fmt.Sprint("v", i))
		if d.Actor != a || d.Counter != last[a]+1 {
			t.Fatalf("write %d by %v: dot %v, last counter %d", i, a, d, last[a])
		}
		last[a] = d.Counter
		checkObject(t, o)
	}
	// A context carrying a higher counter for the actor (its own earlier
	// write, read back from another replica) pushes the next dot past it.
	got, d := write(nil, actA, Clock{{actA, 7}}, "v")
	if d != (Dot{actA, 8}) {
		t.Fatalf("dot %v, want a:8", d)
	}
	wantDots(t, got, d)
}

func TestDelete(t *testing.T) {
	o, da := write(nil, actA, nil, "va")
	ctx := o.Context()
	// A concurrent write lands on the same copy before the delete.
	o, db := write(o, actB, nil, "vb")

	del := o.Delete(ctx, t0)
	wantDots(t, del, db)
	if !del.Clock.Equal(o.Clock) {
		t.Fatalf("clock %v, want %v", del.Clock, o.Clock)
	}
	wantDots(t, o, da, db) // input untouched

	all := o.Delete(o.Context(), t0)
	wantDots(t, all)
	if all.Live() || len(all.Clock) == 0 {
		t.Fatalf("want a tombstone, got %+v", all)
	}
	if !all.Modified().IsZero() {
		t.Fatalf("tombstone Modified = %v", all.Modified())
	}

	keep := o.Delete(nil, t0)
	wantDots(t, keep, da, db)
	if !keep.Equal(o) {
		t.Fatal("Delete(nil) changed a live object")
	}

	// Deleting a key never seen here leaves a tombstone holding the context.
	tomb := (*Object)(nil).Delete(ctx, t0)
	wantDots(t, tomb)
	if !tomb.Clock.Equal(ctx) {
		t.Fatalf("tombstone clock %v, want %v", tomb.Clock, ctx)
	}
}

func TestDeleteConcurrentSiblingSurvives(t *testing.T) {
	// Replica 1 and 2 both hold a:1. A client deletes through replica 1 with
	// context {a:1} while another writes b:1 without context on replica 2.
	r1, da := write(nil, actA, nil, "va")
	r2 := r1
	tomb := r1.Delete(r1.Context(), t0)
	r2, db := write(r2, actB, nil, "vb")
	for _, m := range []*Object{Merge(tomb, r2), Merge(r2, tomb)} {
		wantDots(t, m, db)
		if !m.Clock.Covers(da) {
			t.Fatal("the deleted dot must stay covered")
		}
	}
}

func TestTombstoneDoesNotResurrect(t *testing.T) {
	stale, _ := write(nil, actA, nil, "v1")
	cur, _ := write(stale, actA, stale.Context(), "v2")
	cur, _ = write(cur, actB, nil, "v3")
	tomb := cur.Delete(cur.Context(), t0)
	wantDots(t, tomb)

	m := Merge(stale, tomb)
	wantDots(t, m)
	if m.Live() || !m.Equal(tomb) {
		t.Fatalf("merge of a tombstone into a stale copy: %+v", m)
	}
	wantDots(t, Merge(tomb, stale))
	// Gossiping the stale copy and the older live copy again changes nothing.
	wantDots(t, Merge(Merge(m, stale), cur))
	wantDots(t, Merge(stale, Merge(cur, m)))
	if !tomb.Dominates(stale) || !tomb.Dominates(cur) || stale.Dominates(tomb) {
		t.Fatal("tombstone should dominate the copies it deleted")
	}
}

func TestMergeNil(t *testing.T) {
	if Merge(nil, nil) != nil {
		t.Fatal("Merge(nil, nil) != nil")
	}
	o, _ := write(nil, actA, nil, "v")
	if Merge(o, nil) != o || Merge(nil, o) != o {
		t.Fatal("merging with nil should return the other side")
	}
	if !o.Dominates(nil) || (*Object)(nil).Dominates(o) || !(*Object)(nil).Dominates(nil) {
		t.Fatal("Dominates with nil")
	}
	if (*Object)(nil).Live() || (*Object)(nil).Context() != nil || !(*Object)(nil).Modified().IsZero() {
		t.Fatal("nil object accessors")
	}
}

func TestMergeKeepsUnseenDropsSuperseded(t *testing.T) {
	// a has a:1, a:2; b has seen a:1 and replaced it by b:1, never saw a:2.
	a, d1 := write(nil, actA, nil, "v1")
	b, db := write(a, actB, a.Context(), "vb")
	a, d2 := write(a, actA, nil, "v2")
	for _, m := range []*Object{Merge(a, b), Merge(b, a)} {
		wantDots(t, m, d2, db)
		if !m.Clock.Covers(d1) {
			t.Fatal("merged clock lost a:1")
		}
	}
}

func TestEqualDominatesDigest(t *testing.T) {
	a, _ := write(nil, actA, nil, "v1")
	b, _ := write(nil, actA, nil, "v1")
	if !a.Equal(b) || a.Digest() != b.Digest() || a.ETag() != b.ETag() {
		t.Fatal("identical objects differ")
	}
	// Equal compares dots, not bytes: the same dot is the same write.
	c := &Object{Clock: a.Clock, Siblings: []Sibling{{Dot: a.Siblings[0].Dot, Value: []byte("other")}}}
	if !a.Equal(c) || a.Digest() != c.Digest() {
		t.Fatal("same dots should be equal")
	}

	a2, _ := write(a, actA, nil, "v2")
	tomb := a.Delete(Clock{{actA, 2}}, t0) // same clock as a2, no siblings
	if !tomb.Clock.Equal(a2.Clock) {
		t.Fatalf("setup: %v vs %v", tomb.Clock, a2.Clock)
	}
	d := map[string]*Object{"a": a, "a2": a2, "tomb": tomb, "empty": {}}
	for n1, o1 := range d {
		for n2, o2 := range d {
			eq := o1.Equal(o2)
			if eq != (n1 == n2) {
				t.Errorf("%s.Equal(%s) = %v", n1, n2, eq)
			}
			if (o1.Digest() == o2.Digest()) != eq || (o1.ETag() == o2.ETag()) != eq {
				t.Errorf("digest/etag of %s and %s disagree with Equal=%v", n1, n2, eq)
			}
		}
	}
	if !a2.Dominates(a) || a.Dominates(a2) || !tomb.Dominates(a) || !a.Dominates(a) {
		t.Fatal("Dominates")
	}
	// The tombstone's clock covers a:2, so it deleted what a2 holds.
	if a2.Dominates(tomb) || !tomb.Dominates(a2) {
		t.Fatal("a tombstone dominates the copy it deleted, not the reverse")
	}

	etag := a.ETag()
	if len(etag) != 26 || etag[0] != '"' || etag[25] != '"' {
		t.Fatalf("ETag %q is not a quoted 24-digit hex string", etag)
	}
	// The nil object and the empty one describe the same (absent) history.
	if (*Object)(nil).Digest() != (&Object{}).Digest() {
		t.Fatal("nil and empty digests differ")
	}
	if !(*Object)(nil).Equal(nil) || (*Object)(nil).Equal(a) || a.Equal(nil) {
		t.Fatal("Equal with nil")
	}
}

func TestModified(t *testing.T) {
	o, _ := write(nil, actA, nil, "v1")
	o, _ = o.Write(actB, nil, []byte("v2"), "", t0.Add(time.Hour))
	o, _ = o.Write(actC, nil, []byte("v3"), "", t0.Add(time.Minute))
	if got := o.Modified(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Modified = %v, want newest sibling", got)
	}
	if got := o.Delete(o.Context(), t0).Modified(); !got.IsZero() {
		t.Fatalf("tombstone Modified = %v", got)
	}
}

// cluster simulates one key on three replicas. Actor i coordinates only
// through replica i, as the real coordinator mints dots only from its own
// durable copy. It keeps a ghost record of every dot written and every
// context a write or delete used to supersede versions.
type cluster struct {
	t        testing.TB
	r        *rand.Rand
	replicas [3]*Object
	actors   [3]Actor
	reads    []Clock        // every context a client has read, for stale writes
	written  map[Dot]string // dot -> value
	ghosts   []Clock        // contexts of writes and deletes
	last     map[Actor]uint64
	states   []*Object // every state any replica has held
	seq      int
}

func newCluster(t testing.TB, seed uint64) *cluster {
	return &cluster{
		t:       t,
		r:       rand.New(rand.NewPCG(seed, 0x5eed)),
		actors:  [3]Actor{actA, actB, actC},
		written: map[Dot]string{},
		last:    map[Actor]uint64{},
	}
}

// context picks the context a client sends: none, the coordinator's own
// (full), any replica's current one, or one read earlier (stale).
func (c *cluster) context(i int) Clock {
	switch c.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return c.replicas[i].Context()
	case 2:
		return c.replicas[c.r.IntN(3)].Context()
	default:
		if len(c.reads) == 0 {
			return nil
		}
		return c.reads[c.r.IntN(len(c.reads))]
	}
}

func (c *cluster) set(i int, o *Object) {
	t := c.t
	t.Helper()
	checkObject(t, o)
	if !o.Dominates(c.replicas[i]) {
		t.Fatalf("replica %d went back in time: %+v after %+v", i, o, c.replicas[i])
	}
	c.replicas[i] = o
	c.states = append(c.states, o)
	c.checkReplica(o)
}

// checkReplica asserts that every dot o's clock covers was written, and that
// every covered dot o no longer holds was superseded by a recorded context.
func (c *cluster) checkReplica(o *Object) {
	t := c.t
	t.Helper()
	o = o.orEmpty()
	live := map[Dot]bool{}
	for _, s := range o.Siblings {
		v, ok := c.written[s.Dot]
		if !ok {
			t.Fatalf("sibling %v was never written", s.Dot)
		}
		if string(s.Value) != v {
			t.Fatalf("sibling %v holds %q, was written as %q", s.Dot, s.Value, v)
		}
		live[s.Dot] = true
	}
	for _, e := range o.Clock {
		for k := uint64(1); k <= e.Counter; k++ {
			d := Dot{e.Actor, k}
			if _, ok := c.written[d]; !ok {
				t.Fatalf("clock %v covers %v, never written", o.Clock, d)
			}
			if !live[d] && !c.superseded(d) {
				t.Fatalf("replica lost %v: covered by %v, not live, no context covered it", d, o.Clock)
			}
		}
	}
}

func (c *cluster) superseded(d Dot) bool {
	return slices.ContainsFunc(c.ghosts, func(g Clock) bool { return g.Covers(d) })
}

func (c *cluster) step() {
	t := c.t
	t.Helper()
	i := c.r.IntN(3)
	cur := c.replicas[i]
	switch op := c.r.IntN(10); {
	case op < 4: // write
		ctx := c.context(i)
		c.seq++
		value := fmt.Sprintf("v%d", c.seq) // unique, so retries never dedupe here
		ct := []string{"", "text/plain"}[c.r.IntN(2)]
		next, dot := cur.Write(c.actors[i], ctx, []byte(value), ct, t0.Add(time.Duration(c.seq)))
		if dot.Actor != c.actors[i] || dot.Counter != c.last[dot.Actor]+1 {
			t.Fatalf("dot %v, last counter of the actor %d", dot, c.last[dot.Actor])
		}
		if _, dup := c.written[dot]; dup {
			t.Fatalf("dot %v minted twice", dot)
		}
		c.last[dot.Actor] = dot.Counter
		c.written[dot] = value
		c.ghosts = append(c.ghosts, ctx)
		// Exactly the siblings the context did not cover survive, plus the new one.
		var want []Dot
		for _, s := range cur.orEmpty().Siblings {
			if !ctx.Covers(s.Dot) {
				want = append(want, s.Dot)
			}
		}
		want = append(want, dot)
		slices.SortFunc(want, func(a, b Dot) int { return cmpDot(a, b) })
		wantDots(t, next, want...)
		if !next.Clock.Descends(ctx) || !next.Clock.Descends(cur.Context()) {
			t.Fatalf("clock %v did not absorb %v and %v", next.Clock, ctx, cur.Context())
		}
		c.set(i, next)
	case op < 6: // delete
		ctx := c.context(i)
		c.ghosts = append(c.ghosts, ctx)
		next := cur.Delete(ctx, t0)
		for _, s := range cur.orEmpty().Siblings {
			if slices.Contains(dotsOf(next), s.Dot) == ctx.Covers(s.Dot) {
				t.Fatalf("delete with %v: sibling %v kept=%v", ctx, s.Dot, !ctx.Covers(s.Dot))
			}
		}
		c.set(i, next)
	case op < 9: // replicate j -> i
		j := c.r.IntN(3)
		c.set(i, Merge(cur, c.replicas[j]))
	default: // a client reads a context to use later
		c.reads = append(c.reads, c.replicas[c.r.IntN(3)].Context())
	}
}

func cmpDot(a, b Dot) int {
	switch {
	case dotLess(a, b):
		return -1
	case dotLess(b, a):
		return 1
	}
	return 0
}

// converge gossips all ordered pairs in a random order until nothing changes.
func (c *cluster) converge() *Object {
	t := c.t
	t.Helper()
	type pair struct{ from, to int }
	var pairs []pair
	for i := range 3 {
		for j := range 3 {
			if i != j {
				pairs = append(pairs, pair{i, j})
			}
		}
	}
	for round := 0; ; round++ {
		if round > 5 {
			t.Fatal("gossip did not converge")
		}
		c.r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		changed := false
		for _, p := range pairs {
			next := Merge(c.replicas[p.to], c.replicas[p.from])
			if !next.Equal(c.replicas[p.to]) {
				changed = true
			}
			c.set(p.to, next)
		}
		if !changed {
			break
		}
	}
	want := Merge(Merge(c.replicas[0], c.replicas[1]), c.replicas[2])
	for i, o := range c.replicas {
		if !o.Equal(want) || !bytes.Equal(o.Marshal(), want.Marshal()) {
			t.Fatalf("replica %d = %+v, want %+v", i, o, want)
		}
	}
	return want
}

func TestClusterHistories(t *testing.T) {
	for seed := range uint64(300) {
		c := newCluster(t, seed)
		for range 40 {
			c.step()
		}
		final := c.converge()
		if final == nil {
			continue // nothing was ever written or deleted
		}
		// A written version is gone exactly when some context covered it.
		for d := range c.written {
			live := slices.Contains(dotsOf(final), d)
			if live == c.superseded(d) {
				t.Fatalf("seed %d: dot %v live=%v, superseded=%v", seed, d, live, !live)
			}
			if !final.Clock.Covers(d) {
				t.Fatalf("seed %d: converged clock %v misses %v", seed, final.Clock, d)
			}
		}
		for _, s := range final.Siblings {
			if _, ok := c.written[s.Dot]; !ok {
				t.Fatalf("seed %d: sibling %v was never written", seed, s.Dot)
			}
		}
	}
}

func TestMergeProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for seed := range uint64(40) {
		c := newCluster(t, 1000+seed)
		for range 40 {
			c.step()
		}
		c.converge()
		states := c.states
		if len(states) == 0 {
			continue
		}
		pick := func() *Object {
			if r.IntN(20) == 0 {
				return nil
			}
			return states[r.IntN(len(states))]
		}
		for range 300 {
			a, b, x := pick(), pick(), pick()
			ab, bb := a.Marshal(), b.Marshal()
			m := Merge(a, b)
			checkObject(t, m)
			if !bytes.Equal(a.Marshal(), ab) || !bytes.Equal(b.Marshal(), bb) {
				t.Fatal("Merge mutated an input")
			}
			if !m.Equal(Merge(b, a)) || !bytes.Equal(m.Marshal(), Merge(b, a).Marshal()) {
				t.Fatalf("not commutative:\n%+v\n%+v", a, b)
			}
			if !Merge(m, x).Equal(Merge(a, Merge(b, x))) {
				t.Fatalf("not associative:\n%+v\n%+v\n%+v", a, b, x)
			}
			if !Merge(a, a).Equal(a) || !Merge(m, a).Equal(m) {
				t.Fatalf("not idempotent: %+v", a)
			}
			if (m != nil && !m.Dominates(a)) || (m != nil && !m.Dominates(b)) {
				t.Fatalf("merge does not dominate its inputs")
			}
			if a.Dominates(b) && !a.Context().Descends(b.Context()) {
				t.Fatalf("%+v dominates %+v without descending its clock", a, b)
			}
			if a.Dominates(b) && b.Dominates(a) && !a.Equal(b) {
				t.Fatal("mutual domination without equality")
			}
			if (a.Digest() == b.Digest()) != a.orEmpty().Equal(b.orEmpty()) {
				t.Fatalf("digest disagrees with Equal:\n%+v\n%+v", a, b)
			}
		}
	}
}

func TestWriteDeleteDoNotMutate(t *testing.T) {
	c := newCluster(t, 99)
	for range 60 {
		c.step()
	}
	for _, o := range c.states {
		before := o.Marshal()
		_, _ = o.Write(actA, o.Context(), []byte("x"), "", t0)
		_, _ = o.Write(actB, nil, []byte("y"), "", t0)
		_ = o.Delete(o.Context(), t0)
		_ = o.Delete(Clock{{actA, 1}}, t0)
		if !bytes.Equal(before, o.Marshal()) {
			t.Fatalf("input object mutated: %+v", o)
		}
	}
}

// A tombstone remembers when it was made, so replicas can purge it after a
// grace period; the time travels with merges and encodings but is not part
// of the object's identity.
func TestTombstoneDeletionTime(t *testing.T) {
	live, _ := (*Object)(nil).Write(actA, nil, []byte("v"), "", t0)
	tomb := live.Delete(live.Context(), t0.Add(time.Minute))
	if tomb.Live() || tomb.Deleted != t0.Add(time.Minute).UnixNano() {
		t.Fatalf("tombstone deleted at %d, want %d", tomb.Deleted, t0.Add(time.Minute).UnixNano())
	}
	if keep := live.Delete(nil, t0); keep.Deleted != 0 {
		t.Fatalf("a delete that left a sibling recorded a deletion time %d", keep.Deleted)
	}

	later := live.Delete(live.Context(), t0.Add(time.Hour))
	if got := Merge(tomb, later); got.Deleted != later.Deleted {
		t.Fatalf("merged tombstones deleted at %d, want the later %d", got.Deleted, later.Deleted)
	}
	if got := Merge(live, tomb); got.Live() || got.Deleted != tomb.Deleted {
		t.Fatalf("merging a tombstone into its live copy gave %+v", got)
	}
	rewritten, _ := tomb.Write(actB, tomb.Context(), []byte("again"), "", t0)
	if rewritten.Deleted != 0 || Merge(rewritten, tomb).Deleted != 0 {
		t.Fatalf("a live object kept a deletion time: %d", rewritten.Deleted)
	}
	if !tomb.Equal(later) || tomb.Digest() != later.Digest() {
		t.Fatal("tombstones of one history differ by deletion time")
	}

	enc := tomb.Marshal()
	if enc[0] != formatV2 {
		t.Fatalf("tombstone with a time encoded as format %d", enc[0])
	}
	got, err := Unmarshal(enc)
	if err != nil || got.Deleted != tomb.Deleted || !got.Equal(tomb) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if enc := live.Marshal(); enc[0] != formatV1 {
		t.Fatalf("live object encoded as format %d, want %d as before", enc[0], formatV1)
	}
	// A deletion time on a live object, or a zero one, is refused.
	bad := append([]byte{formatV2}, live.Marshal()[1:]...)
	bad = binary.AppendVarint(bad, 5)
	if _, err := Unmarshal(bad); err == nil {
		t.Error("accepted a deletion time on a live object")
	}
	zero := append([]byte{formatV2}, (&Object{Clock: tomb.Clock}).Marshal()[1:]...)
	zero = binary.AppendVarint(zero, 0)
	if _, err := Unmarshal(zero); err == nil {
		t.Error("accepted a zero deletion time")
	}
}

// A PUT retried through another coordinator mints a second dot for the same
// value; merging keeps one of them (the lowest dot, on every replica), so
// the client does not see the value twice.
func TestMergeDropsRetriedDuplicate(t *testing.T) {
	base, _ := (*Object)(nil).Write(actA, nil, []byte("old"), "text/plain", t0)
	first, _ := base.Write(actA, base.Context(), []byte("new"), "text/plain", t0)
	retry, _ := base.Write(actB, base.Context(), []byte("new"), "text/plain", t0.Add(time.Second))
	other, _ := base.Write(actB, base.Context(), []byte("new"), "application/json", t0)
	got := Merge(first, retry)
	if len(got.Siblings) != 1 || string(got.Siblings[0].Value) != "new" {
		t.Fatalf("merge of a write and its retry = %v", dotsOf(got))
	}
	if !Merge(retry, first).Equal(got) {
		t.Fatal("replicas merging in either order disagree")
	}
	if !got.Clock.Covers(first.Siblings[0].Dot) || !got.Clock.Covers(retry.Siblings[0].Dot) {
		t.Fatal("the merged clock lost a dot")
	}
	checkObject(t, got)
	if n := len(Merge(first, other).Siblings); n != 2 {
		t.Fatalf("the same bytes under another content type are another value: %d siblings", n)
	}
}
