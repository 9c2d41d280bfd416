package replication

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// readLatency tracks how long replica reads took recently, for speculative
// reads: a read whose answers take longer than the recent p99 asks one
// more replica (as Cassandra's speculative retry does).
type readLatency struct {
	mu      sync.Mutex // guards recent and next
	recent  [512]time.Duration
	next    int
	samples int

	threshold  atomic.Int64 // the current p99, in nanoseconds
	speculated atomic.Uint64
}

const (
	// Until enough reads were seen, and within these bounds, a read waits
	// defaultSpeculateAfter before asking one more replica.
	defaultSpeculateAfter = 20 * time.Millisecond
	minSpeculateAfter     = 500 * time.Microsecond
	maxSpeculateAfter     = 250 * time.Millisecond
	// The p99 is recomputed every recomputeEvery reads.
	recomputeEvery = 64
)

// observe records one successful replica read.
func (l *readLatency) observe(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent[l.next] = d
	l.next = (l.next + 1) % len(l.recent)
	l.samples++
	if l.samples%recomputeEvery != 0 {
		return
	}
	n := min(l.samples, len(l.recent))
	sorted := slices.Clone(l.recent[:n])
	slices.Sort(sorted)
	p99 := sorted[(n*99+99)/100-1]
	l.threshold.Store(int64(min(max(p99, minSpeculateAfter), maxSpeculateAfter)))
}

// p99 is how long a read waits before it speculates.
func (l *readLatency) p99() time.Duration {
	if t := l.threshold.Load(); t > 0 {
		return time.Duration(t)
	}
	return defaultSpeculateAfter
}

// SpeculativeReads counts the reads that asked one more replica because
// the first were slow.
func (c *Coordinator) SpeculativeReads() uint64 { return c.reads.speculated.Load() }
