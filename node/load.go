package node

import (
	"math"
	"slices"
	"sync"
	"time"
)

// loadWindow is how long the load figures a node publishes are measured
// over.
const loadWindow = 5 * time.Second

// maxLoadSamples bounds the latencies kept per window: past it, samples
// replace earlier ones at random (reservoir sampling), so a busy node keeps
// a fair sample in fixed memory.
const maxLoadSamples = 2048

// loadStats measures the client requests a node coordinates or forwards,
// in fixed windows: how many per second, and their 99th percentile
// latency. The last complete window is what the node publishes to the
// cluster (GET /cluster, the /ui page).
type loadStats struct {
	mu      sync.Mutex
	start   time.Time
	count   int
	samples []float64
	rng     uint64
	// last is the previous complete window's figures.
	lastRate, lastP99 float64
}

func newLoadStats(now time.Time) *loadStats {
	return &loadStats{start: now, rng: uint64(now.UnixNano()) | 1}
}

// observe records one request that took d, ending at now.
func (l *loadStats) observe(d time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll(now)
	l.count++
	if len(l.samples) < maxLoadSamples {
		l.samples = append(l.samples, d.Seconds())
		return
	}
	l.rng ^= l.rng << 13 // xorshift: cheap, and good enough to pick samples
	l.rng ^= l.rng >> 7
	l.rng ^= l.rng << 17
	if i := l.rng % uint64(l.count); i < maxLoadSamples {
		l.samples[i] = d.Seconds()
	}
}

// figures returns requests per second and the p99 latency in seconds of
// the last complete window (zero before one completed).
func (l *loadStats) figures(now time.Time) (rate, p99 float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll(now)
	return l.lastRate, l.lastP99
}

// roll closes the current window when it is over. A window that ran long
// because nothing came to close it averages over its whole length.
func (l *loadStats) roll(now time.Time) {
	elapsed := now.Sub(l.start)
	if elapsed < loadWindow {
		return
	}
	l.lastRate, l.lastP99 = float64(l.count)/elapsed.Seconds(), percentile(l.samples, 0.99)
	l.start, l.count, l.samples = now, 0, l.samples[:0]
}

// percentile returns the q-quantile of samples (nearest rank), 0 when empty.
func percentile(samples []float64, q float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[int(math.Ceil(q*float64(len(s))))-1]
}
