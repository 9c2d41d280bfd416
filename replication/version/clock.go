package version

import (
	"fmt"
	"slices"
	"strings"
)

// Actor identifies one coordinator incarnation (a node's data dir).
type Actor uint64

// String renders the actor as fixed-width hex, the form logs use.
func (a Actor) String() string { return fmt.Sprintf("%016x", uint64(a)) }

// Dot names one write: the Counter-th write coordinated by Actor for a key.
type Dot struct {
	Actor   Actor
	Counter uint64
}

func (d Dot) String() string { return fmt.Sprintf("%s:%d", d.Actor, d.Counter) }

// Entry is one actor's counter in a Clock.
type Entry struct {
	Actor   Actor
	Counter uint64
}

// Clock is a version vector: for each actor, the highest counter seen, with
// every lower counter implied. Entries are sorted by actor, counters are
// positive, and actors are unique; the zero value is the empty clock.
type Clock []Entry

// Get returns the counter of actor a, 0 when absent.
func (c Clock) Get(a Actor) uint64 {
	i, ok := slices.BinarySearchFunc(c, a, func(e Entry, a Actor) int { return cmpActor(e.Actor, a) })
	if !ok {
		return 0
	}
	return c[i].Counter
}

// Covers reports whether the write named by d is part of c's history.
func (c Clock) Covers(d Dot) bool { return d.Counter > 0 && c.Get(d.Actor) >= d.Counter }

// Descends reports whether c has seen everything o has (c >= o).
func (c Clock) Descends(o Clock) bool {
	for _, e := range o {
		if c.Get(e.Actor) < e.Counter {
			return false
		}
	}
	return true
}

// Equal reports whether both clocks hold the same entries.
func (c Clock) Equal(o Clock) bool { return slices.Equal(c, o) }

// Concurrent reports whether neither clock descends the other.
func (c Clock) Concurrent(o Clock) bool { return !c.Descends(o) && !o.Descends(c) }

// Merge returns the least clock that descends both c and o.
func (c Clock) Merge(o Clock) Clock {
	out := make(Clock, 0, max(len(c), len(o)))
	i, j := 0, 0
	for i < len(c) && j < len(o) {
		switch {
		case c[i].Actor < o[j].Actor:
			out = append(out, c[i])
			i++
		case c[i].Actor > o[j].Actor:
			out = append(out, o[j])
			j++
		default:
			out = append(out, Entry{c[i].Actor, max(c[i].Counter, o[j].Counter)})
			i++
			j++
		}
	}
	out = append(out, c[i:]...)
	out = append(out, o[j:]...)
	if len(out) == 0 {
		return nil
	}
	return out
}

// With returns c extended to cover d.
func (c Clock) With(d Dot) Clock { return c.Merge(Clock{{d.Actor, d.Counter}}) }

// valid reports whether c keeps the Clock invariants (sorted, unique, positive).
func (c Clock) valid() bool {
	for i, e := range c {
		if e.Counter == 0 || (i > 0 && c[i-1].Actor >= e.Actor) {
			return false
		}
	}
	return true
}

func (c Clock) String() string {
	parts := make([]string, len(c))
	for i, e := range c {
		parts[i] = fmt.Sprintf("%s:%d", e.Actor, e.Counter)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func cmpActor(a, b Actor) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
