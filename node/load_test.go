package node

import (
	"math"
	"testing"
	"time"
)

func TestLoadStatsWindows(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newLoadStats(t0)
	if rate, p99 := l.figures(t0.Add(time.Second)); rate != 0 || p99 != 0 {
		t.Fatalf("before a window completed: %v/s, p99 %v", rate, p99)
	}
	// 1,000 requests in the first window: 990 fast ones and 10 slow.
	for i := range 1000 {
		d := time.Millisecond
		if i%100 == 0 {
			d = 100 * time.Millisecond
		}
		l.observe(d, t0.Add(time.Duration(i)*time.Millisecond))
	}
	rate, p99 := l.figures(t0.Add(loadWindow))
	if math.Abs(rate-200) > 1 {
		t.Errorf("rate %v/s, want 200 (1,000 in %v)", rate, loadWindow)
	}
	if p99 != 0.001 {
		t.Errorf("p99 %vs, want 0.001 (99%% of requests took 1ms)", p99)
	}
	// Past the reservoir's size, the sample stays fair: all slow.
	for i := range 3 * maxLoadSamples {
		l.observe(time.Second, t0.Add(loadWindow+time.Duration(i)*time.Microsecond))
	}
	if _, p99 := l.figures(t0.Add(2*loadWindow + time.Millisecond)); p99 != 1 {
		t.Errorf("p99 of an all-slow window: %v", p99)
	}
	// An idle window reports nothing.
	if rate, _ := l.figures(t0.Add(4 * loadWindow)); rate != 0 {
		t.Errorf("idle window rate %v", rate)
	}
}
