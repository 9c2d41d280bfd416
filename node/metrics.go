package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// nodeMetrics are the node's own collectors; the HTTP layer and the
// replication layer register theirs on the same registry.
type nodeMetrics struct {
	coordinator   *prometheus.CounterVec
	siblings      prometheus.Histogram
	transferBytes prometheus.Counter
	transfers     prometheus.Counter
	staleForwards prometheus.Counter
}

func newNodeMetrics(reg prometheus.Registerer, n *Node) *nodeMetrics {
	m := &nodeMetrics{
		coordinator: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_coordinator_requests_total",
			Help: "Client requests this node coordinated or forwarded, by op (get, put, delete; forward: passed on to a replica; standin_get, standin_put, standin_delete: run here for unreachable replicas) and outcome (ok: quorum met; unavailable, timeout: quorum failed; refused: the write would leave more siblings than --max-siblings; error).",
		}, []string{"op", "outcome"}),
		siblings: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                            "dynamo_read_siblings",
			Help:                            "Live siblings returned per successful quorum read.",
			Buckets:                         []float64{0, 1, 2, 3, 5, 10, 20, 50},
			NativeHistogramBucketFactor:     replication.NativeBucketFactor,
			NativeHistogramMaxBucketNumber:  replication.NativeMaxBucketNumber,
			NativeHistogramMinResetDuration: replication.NativeMinResetDuration,
		}),
	}
	m.transferBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dynamo_partition_transfer_bytes_total",
		Help: "Partition data this node received because the ring gave it new partitions.",
	})
	m.transfers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dynamo_partition_transfers_total",
		Help: "Partitions this node finished receiving after ring changes.",
	})
	m.staleForwards = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dynamo_stale_ring_forwards_total",
		Help: "Writes from coordinators with another ring view that this node passed on to the replicas its own ring names.",
	})
	owned := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dynamo_partitions_owned",
		Help: "Partitions this node owns (is first in the preference list of).",
	}, func() float64 { return float64(n.mover.progress().Owned) })
	inTransfer := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dynamo_partitions_in_transfer",
		Help: "Partitions this node is still receiving after a ring change.",
	}, func() float64 { return float64(n.mover.progress().Pending) })
	ringMembers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dynamo_ring_members",
		Help: "Members that own partitions in this node's ring.",
	}, func() float64 {
		if r := n.ring.Load(); r != nil {
			return float64(len(r.Members()))
		}
		return 0
	})
	speculative := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "dynamo_speculative_reads_total",
		Help: "Reads that asked one more replica because the first answers were slower than the recent p99 of replica reads.",
	}, func() float64 {
		if n.coord == nil {
			return 0
		}
		return float64(n.coord.SpeculativeReads())
	})
	reg.MustRegister(m.coordinator, m.siblings, m.transferBytes, m.transfers, m.staleForwards, owned, inTransfer, ringMembers,
		membersByState{n}, pendingHints{n}, storageSize{n}, &storageKeys{db: n.db}, speculative)
	return m
}

func (m *nodeMetrics) coordinated(op string, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, replication.ErrUnavailable), errors.Is(err, replication.ErrNoReplicas):
		outcome = "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "timeout"
	case errors.Is(err, replication.ErrTooManySiblings):
		outcome = "refused"
	default:
		outcome = "error"
	}
	m.coordinator.WithLabelValues(op, outcome).Inc()
}

func (m *nodeMetrics) observeSiblings(obj *version.Object, err error) {
	if err == nil && obj != nil {
		m.siblings.Observe(float64(len(obj.Siblings)))
	}
}

// pendingHints reports the hints held per target at scrape time, from
// counters the store keeps (no scan).
type pendingHints struct{ n *Node }

var pendingHintsDesc = prometheus.NewDesc("dynamo_hints_pending",
	"Hints this node holds for a target node, waiting for handoff.", []string{"target"}, nil)

func (p pendingHints) Describe(ch chan<- *prometheus.Desc) { ch <- pendingHintsDesc }

func (p pendingHints) Collect(ch chan<- prometheus.Metric) {
	counts, err := p.n.db.HintCounts()
	if err != nil {
		return
	}
	for target, c := range counts {
		ch <- prometheus.MustNewConstMetric(pendingHintsDesc, prometheus.GaugeValue, float64(c), target)
	}
}

// storageSize reports the data file's size and how much of it holds live
// data, at scrape time. Dropped partitions shrink the second at once; the
// file itself shrinks when a start-up compacts it.
type storageSize struct{ n *Node }

var (
	storageFileDesc = prometheus.NewDesc("dynamo_storage_file_bytes",
		"Size of this node's data file on disk.", nil, nil)
	storageInUseDesc = prometheus.NewDesc("dynamo_storage_in_use_bytes",
		"Part of the data file that holds live data; the rest is free pages the store reuses (and gives back by compacting at start-up when they are most of the file).", nil, nil)
)

func (s storageSize) Describe(ch chan<- *prometheus.Desc) {
	ch <- storageFileDesc
	ch <- storageInUseDesc
}

func (s storageSize) Collect(ch chan<- prometheus.Metric) {
	file, inUse, err := s.n.db.Size()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(storageFileDesc, prometheus.GaugeValue, float64(file))
	ch <- prometheus.MustNewConstMetric(storageInUseDesc, prometheus.GaugeValue, float64(inUse))
}

// membersByState reports the members this node knows of in each state.
// The contract's four states are always reported, 0 when none is in them,
// so a dashboard shows a member going dead as a step rather than a gap.
type membersByState struct{ n *Node }

var membersDesc = prometheus.NewDesc("dynamo_members",
	"Members of the cluster as this node sees them, by state (alive, suspect, dead, left).", []string{"state"}, nil)

func (m membersByState) Describe(ch chan<- *prometheus.Desc) { ch <- membersDesc }

func (m membersByState) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{StateAlive: 0, StateSuspect: 0, StateDead: 0, StateLeft: 0}
	if m.n.membership != nil {
		for _, mem := range m.n.membership.Members() {
			counts[mem.State]++
		}
	}
	for state, c := range counts {
		ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(c), state)
	}
}

// keyCountCost bounds the share of time counting keys may take: a count is
// reused until it is keyCountCost times older than it took to make.
const keyCountCost = 100

// storageKeys reports how many keys the store holds. bbolt keeps no count,
// so counting walks every page of every partition (not the values):
// measured, 1,000,000 keys with 200-byte values in 256 partitions took 30 ms
// with the file in the page cache, 140 ms from disk. A scrape therefore
// recounts only once the last count is keyCountCost times older than it
// took (so counting takes at most 1% of the time, and stores of up to a few
// million keys are counted at every scrape), and counts one partition per
// read transaction, so that a write that must grow the file never waits
// for a long walk.
type storageKeys struct {
	db *store.DB

	mu      sync.Mutex // guards the fields below and serialises counts
	keys    int        // last count
	counted time.Time  // when the last count finished; zero before the first
	took    time.Duration
}

var storageKeysDesc = prometheus.NewDesc("dynamo_storage_keys",
	"Keys this node stores, deleted ones whose tombstones are kept included; recounted at scrape time once the last count is 100 times older than it took.", nil, nil)

func (s *storageKeys) Describe(ch chan<- *prometheus.Desc) { ch <- storageKeysDesc }

func (s *storageKeys) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counted.IsZero() || time.Since(s.counted) >= keyCountCost*s.took {
		start := time.Now()
		keys, err := s.count()
		if err != nil {
			return // closed, or failing: report nothing rather than a stale count
		}
		s.keys, s.counted, s.took = keys, time.Now(), time.Since(start)
	}
	ch <- prometheus.MustNewConstMetric(storageKeysDesc, prometheus.GaugeValue, float64(s.keys))
}

func (s *storageKeys) count() (int, error) {
	parts, err := s.db.Partitions()
	if err != nil {
		return 0, err
	}
	total := 0
	for _, p := range parts {
		c, err := s.db.Count(p)
		if err != nil {
			return 0, err
		}
		total += c
	}
	return total, nil
}
