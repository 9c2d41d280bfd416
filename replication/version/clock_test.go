package version

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Actors with hand-checkable names; a < b < c.
const (
	actA Actor = 0xa
	actB Actor = 0xb
	actC Actor = 0xc
)

func TestClockGet(t *testing.T) {
	c := Clock{{actA, 3}, {actC, 1}}
	for _, tc := range []struct {
		a    Actor
		want uint64
	}{{actA, 3}, {actB, 0}, {actC, 1}, {0, 0}, {^Actor(0), 0}} {
		if got := c.Get(tc.a); got != tc.want {
			t.Errorf("%v.Get(%v) = %d, want %d", c, tc.a, got, tc.want)
		}
	}
	if got := Clock(nil).Get(actA); got != 0 {
		t.Errorf("nil.Get = %d, want 0", got)
	}
}

func TestClockCovers(t *testing.T) {
	c := Clock{{actA, 3}, {actC, 1}}
	for _, tc := range []struct {
		d    Dot
		want bool
	}{
		{Dot{actA, 1}, true},
		{Dot{actA, 3}, true},
		{Dot{actA, 4}, false},
		{Dot{actB, 1}, false},
		{Dot{actC, 1}, true},
		{Dot{actC, 2}, false},
		// Counter 0 names no write; no clock covers it, not even the empty one.
		{Dot{actA, 0}, false},
		{Dot{actB, 0}, false},
	} {
		if got := c.Covers(tc.d); got != tc.want {
			t.Errorf("%v.Covers(%v) = %v, want %v", c, tc.d, got, tc.want)
		}
	}
	if Clock(nil).Covers(Dot{actA, 1}) {
		t.Error("empty clock covers a dot")
	}
}

func TestClockDescendsConcurrentEqual(t *testing.T) {
	for _, tc := range []struct {
		name               string
		c, o               Clock
		cDo, oDc, conc, eq bool // c>=o, o>=c, concurrent, equal
	}{
		{"both empty", nil, nil, true, true, false, true},
		{"nil and empty", nil, Clock{}, true, true, false, true},
		{"empty below", Clock{{actA, 1}}, nil, true, false, false, false},
		{"equal", Clock{{actA, 2}, {actB, 1}}, Clock{{actA, 2}, {actB, 1}}, true, true, false, true},
		{"higher counter", Clock{{actA, 3}}, Clock{{actA, 2}}, true, false, false, false},
		{"extra actor", Clock{{actA, 2}, {actB, 1}}, Clock{{actA, 2}}, true, false, false, false},
		{"concurrent counters", Clock{{actA, 2}, {actB, 1}}, Clock{{actA, 1}, {actB, 2}}, false, false, true, false},
		{"disjoint actors", Clock{{actA, 1}}, Clock{{actB, 1}}, false, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Descends(tc.o); got != tc.cDo {
				t.Errorf("%v.Descends(%v) = %v", tc.c, tc.o, got)
			}
			if got := tc.o.Descends(tc.c); got != tc.oDc {
				t.Errorf("%v.Descends(%v) = %v", tc.o, tc.c, got)
			}
			if got := tc.c.Concurrent(tc.o); got != tc.conc {
				t.Errorf("%v.Concurrent(%v) = %v", tc.c, tc.o, got)
			}
			if got := tc.o.Concurrent(tc.c); got != tc.conc {
				t.Errorf("%v.Concurrent(%v) = %v", tc.o, tc.c, got)
			}
			if got := tc.c.Equal(tc.o); got != tc.eq {
				t.Errorf("%v.Equal(%v) = %v", tc.c, tc.o, got)
			}
		})
	}
}

func TestClockMerge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c, o    Clock
		want    Clock
		wantNil bool
	}{
		{"both empty", nil, nil, nil, true},
		{"empty slices", Clock{}, Clock{}, nil, true},
		{"left empty", nil, Clock{{actA, 1}}, Clock{{actA, 1}}, false},
		{"right empty", Clock{{actA, 1}}, nil, Clock{{actA, 1}}, false},
		{"max per actor", Clock{{actA, 3}, {actB, 1}}, Clock{{actA, 1}, {actB, 4}}, Clock{{actA, 3}, {actB, 4}}, false},
		{"interleaved actors", Clock{{actA, 1}, {actC, 3}}, Clock{{actB, 2}}, Clock{{actA, 1}, {actB, 2}, {actC, 3}}, false},
		{"tail on left", Clock{{actA, 1}, {actB, 1}, {actC, 1}}, Clock{{actA, 2}}, Clock{{actA, 2}, {actB, 1}, {actC, 1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.c.Merge(tc.o)
			if !got.Equal(tc.want) {
				t.Fatalf("%v.Merge(%v) = %v, want %v", tc.c, tc.o, got, tc.want)
			}
			if tc.wantNil && got != nil {
				t.Fatalf("empty merge = %#v, want nil", got)
			}
			if !got.valid() {
				t.Fatalf("merge %v breaks the clock invariants", got)
			}
		})
	}
}

func TestClockWith(t *testing.T) {
	c := Clock{{actA, 2}, {actC, 1}}
	for _, tc := range []struct {
		d    Dot
		want Clock
	}{
		{Dot{actB, 1}, Clock{{actA, 2}, {actB, 1}, {actC, 1}}},
		{Dot{actA, 5}, Clock{{actA, 5}, {actC, 1}}},
		{Dot{actA, 1}, Clock{{actA, 2}, {actC, 1}}}, // already covered: no change
	} {
		got := c.With(tc.d)
		if !got.Equal(tc.want) {
			t.Errorf("%v.With(%v) = %v, want %v", c, tc.d, got, tc.want)
		}
		if !got.Covers(tc.d) {
			t.Errorf("%v.With(%v) does not cover the dot", c, tc.d)
		}
	}
	if got := Clock(nil).With(Dot{actA, 1}); !got.Equal(Clock{{actA, 1}}) {
		t.Errorf("nil.With = %v", got)
	}
	if !c.Equal(Clock{{actA, 2}, {actC, 1}}) {
		t.Errorf("With mutated its receiver: %v", c)
	}
}

func TestClockString(t *testing.T) {
	c := Clock{{actA, 2}, {actB, 1}}
	if got, want := c.String(), "{000000000000000a:2,000000000000000b:1}"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := (Dot{actA, 7}).String(), "000000000000000a:7"; got != want {
		t.Errorf("Dot.String = %q, want %q", got, want)
	}
	if got := Clock(nil).String(); got != "{}" {
		t.Errorf("empty String = %q", got)
	}
}

// randClock draws a clock over a few actors with small counters, so that
// equal, ordered and concurrent pairs all occur often.
func randClock(r *rand.Rand) Clock {
	var c Clock
	for _, a := range []Actor{actA, actB, actC} {
		if n := r.IntN(4); n > 0 {
			c = append(c, Entry{a, uint64(n)})
		}
	}
	return c
}

func TestClockDescendsPartialOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var equal, ordered, concurrent int
	for range 5000 {
		a, b, c := randClock(r), randClock(r), randClock(r)
		if !a.Descends(a) {
			t.Fatalf("not reflexive: %v", a)
		}
		ab, ba := a.Descends(b), b.Descends(a)
		if (ab && ba) != a.Equal(b) {
			t.Fatalf("antisymmetry: %v >= %v both ways but Equal = %v", a, b, a.Equal(b))
		}
		if ab && b.Descends(c) && !a.Descends(c) {
			t.Fatalf("not transitive: %v >= %v >= %v", a, b, c)
		}
		if a.Concurrent(b) != (!ab && !ba) {
			t.Fatalf("Concurrent(%v, %v) disagrees with Descends", a, b)
		}
		switch {
		case ab && ba:
			equal++
		case ab || ba:
			ordered++
		default:
			concurrent++
		}
	}
	// The generator must exercise every relation, or the checks above prove little.
	if equal < 50 || ordered < 500 || concurrent < 500 {
		t.Fatalf("poor coverage: equal=%d ordered=%d concurrent=%d", equal, ordered, concurrent)
	}
}

func TestClockMergeLattice(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		a, b, c := randClock(r), randClock(r), randClock(r)
		a0, b0 := slices.Clone(a), slices.Clone(b)
		ab := a.Merge(b)
		if !a.Equal(a0) || !b.Equal(b0) {
			t.Fatalf("Merge mutated its inputs: %v %v, were %v %v", a, b, a0, b0)
		}
		if !ab.valid() {
			t.Fatalf("%v.Merge(%v) = %v breaks the invariants", a, b, ab)
		}
		if !ab.Equal(b.Merge(a)) {
			t.Fatalf("not commutative: %v, %v", a, b)
		}
		if !ab.Merge(c).Equal(a.Merge(b.Merge(c))) {
			t.Fatalf("not associative: %v, %v, %v", a, b, c)
		}
		if !a.Merge(a).Equal(a) {
			t.Fatalf("not idempotent: %v", a)
		}
		if !ab.Descends(a) || !ab.Descends(b) {
			t.Fatalf("%v is not an upper bound of %v, %v", ab, a, b)
		}
		if c.Descends(a) && c.Descends(b) && !c.Descends(ab) {
			t.Fatalf("%v bounds %v and %v but not their merge %v", c, a, b, ab)
		}
		if a.Descends(b) && !ab.Equal(a) {
			t.Fatalf("%v >= %v but merge is %v", a, b, ab)
		}
	}
}

func TestClockMergeDoesNotAlias(t *testing.T) {
	a := Clock{{actA, 1}, {actB, 2}}
	for _, m := range []Clock{a.Merge(nil), Clock(nil).Merge(a), a.Merge(a)} {
		m[0].Counter = 99
		if a[0].Counter != 1 {
			t.Fatal("merge result aliases its input")
		}
	}
}
