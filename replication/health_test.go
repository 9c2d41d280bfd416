package replication

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1000, 0)} }

func TestHealthBacksOffAndRecovers(t *testing.T) {
	clock := newFakeClock()
	h := NewHealth(HealthConfig{MinBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, Now: clock.now})
	if !h.Usable("a") {
		t.Fatal("a fresh node must be usable")
	}
	h.Failed("a")
	if h.Usable("a") {
		t.Fatal("a node that just failed must be skipped")
	}
	h.Failed("a") // during the back-off: not counted again
	clock.add(100 * time.Millisecond)
	if !h.Usable("a") {
		t.Fatal("the back-off must expire after MinBackoff")
	}
	// Failing again doubles the back-off, up to MaxBackoff.
	for _, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond} {
		h.Failed("a")
		clock.add(want - time.Millisecond)
		if h.Usable("a") {
			t.Fatalf("usable before a back-off of %s ended", want)
		}
		clock.add(time.Millisecond)
		if !h.Usable("a") {
			t.Fatalf("not usable after a back-off of %s", want)
		}
	}
	h.Failed("a")
	h.Succeeded("a")
	if !h.Usable("a") {
		t.Fatal("a success must clear the back-off")
	}
	h.Failed("a")
	clock.add(99 * time.Millisecond)
	if h.Usable("a") {
		t.Fatal("usable during the back-off")
	}
	clock.add(time.Millisecond)
	if !h.Usable("a") {
		t.Fatal("after a success the back-off must start again at MinBackoff")
	}
}

func TestHealthFollowsMembershipAndIgnoresAnswers(t *testing.T) {
	down := map[string]bool{"b": true}
	h := NewHealth(HealthConfig{Down: func(id string) bool { return down[id] }})
	if h.Usable("b") || h.Reachable("b") {
		t.Fatal("a member marked down must be skipped")
	}
	down["b"] = false
	if !h.Usable("b") {
		t.Fatal("recovery must be noticed without a restart")
	}
	// A coordinator's deliberate answer says nothing about its health.
	h.observe("c", fmt.Errorf("forwarded: %w", ErrUnavailable))
	h.observe("c", ErrNotReplica)
	if !h.Usable("c") {
		t.Fatal("a quorum failure answered by c must not back c off")
	}
	h.observe("c", ErrUnreachable)
	if h.Usable("c") {
		t.Fatal("an unreachable node must be backed off")
	}
	if !h.Reachable("c") {
		t.Fatal("back-off alone must not make a node unreachable for membership")
	}
	var nilHealth *Health
	if !nilHealth.Usable("x") {
		t.Fatal("a nil Health treats every node as usable")
	}
}
