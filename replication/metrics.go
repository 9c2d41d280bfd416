package replication

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets are the classic buckets of the node's latency histograms
// (client requests, replica requests), in seconds: 0.25 ms to 10 s, densest
// between 1 and 50 ms where local and quorum requests fall, so that p99 and
// p99.9 read from the text format land between close bounds.
var LatencyBuckets = []float64{
	0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0065,
	0.008, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
	0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10,
}

// Native histograms, served beside the classic buckets to scrapers that ask
// for protobuf: buckets about 10% wide, at most 160 per histogram (past that
// the resolution halves), reset at most hourly to win the resolution back.
const (
	NativeBucketFactor     = 1.1
	NativeMaxBucketNumber  = 160
	NativeMinResetDuration = time.Hour
)

// Metrics are the replication layer's Prometheus collectors. A nil *Metrics
// records nothing, so tests can leave it out.
type Metrics struct {
	replicaRequests *prometheus.CounterVec
	replicaDuration *prometheus.HistogramVec
	readRepairs     *prometheus.CounterVec
	standIns        *prometheus.CounterVec
	hintsStored     prometheus.Counter
	hintsDelivered  prometheus.Counter
	hintsDropped    prometheus.Counter
}

// NewMetrics registers the replication collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		replicaRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_replica_requests_total",
			Help: "Requests this node sent to other replicas, by peer, operation (store, fetch, handoff) and outcome (ok, unreachable, error).",
		}, []string{"peer", "op", "outcome"}),
		// The peer label costs one histogram per member and op: members
		// are few, and per-peer latency is what finds the slow node.
		replicaDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "dynamo_replica_request_duration_seconds",
			Help:                            "Latency of requests this node sent to other replicas, by peer and operation (store, fetch, handoff), failures included.",
			Buckets:                         LatencyBuckets,
			NativeHistogramBucketFactor:     NativeBucketFactor,
			NativeHistogramMaxBucketNumber:  NativeMaxBucketNumber,
			NativeHistogramMinResetDuration: NativeMinResetDuration,
		}, []string{"peer", "op"}),
		readRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_read_repairs_total",
			Help: "Stale replicas sent the reconciled version after a read, by outcome (ok, error).",
		}, []string{"outcome"}),
		standIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_standin_requests_total",
			Help: "Replica requests (op: store, fetch) served by a stand-in node because the replica was unreachable (sloppy quorum).",
		}, []string{"op"}),
		hintsStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_hints_stored_total",
			Help: "Hints this node stored for unreachable replicas.",
		}),
		hintsDelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_hints_delivered_total",
			Help: "Hints this node handed off to their target and deleted.",
		}),
		hintsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_hints_dropped_total",
			Help: "Hints dropped, oldest first, because hint storage reached its bound; anti-entropy repairs what they carried.",
		}),
	}
	// Series that exist from the start read 0 rather than "no data", and
	// rate() sees their first increase.
	for _, o := range []string{"ok", "error"} {
		m.readRepairs.WithLabelValues(o)
	}
	for _, op := range []string{"store", "fetch"} {
		m.standIns.WithLabelValues(op)
	}
	reg.MustRegister(m.replicaRequests, m.replicaDuration, m.readRepairs, m.standIns, m.hintsStored, m.hintsDelivered, m.hintsDropped)
	return m
}

// observeReplica records one request to peer that started at start.
func (m *Metrics) observeReplica(peer, op string, start time.Time, err error) {
	if m == nil {
		return
	}
	m.replicaRequests.WithLabelValues(peer, op, outcome(err)).Inc()
	m.replicaDuration.WithLabelValues(peer, op).Observe(time.Since(start).Seconds())
}

func (m *Metrics) readRepair(err error) {
	if m == nil {
		return
	}
	m.readRepairs.WithLabelValues(outcome(err)).Inc()
}

func (m *Metrics) standIn(op string) {
	if m != nil {
		m.standIns.WithLabelValues(op).Inc()
	}
}

func (m *Metrics) hintDelivered() {
	if m != nil {
		m.hintsDelivered.Inc()
	}
}

// HintStored counts a hint this node stored.
func (m *Metrics) HintStored() {
	if m != nil {
		m.hintsStored.Inc()
	}
}

// HintsDropped counts hints dropped: at the storage bound, or too old to
// deliver safely.
func (m *Metrics) HintsDropped(n int) {
	if m != nil {
		m.hintsDropped.Add(float64(n))
	}
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnreachable):
		return "unreachable"
	}
	return "error"
}
