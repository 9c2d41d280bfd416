package replication

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the replication layer's Prometheus collectors. A nil *Metrics
// records nothing, so tests can leave it out.
type Metrics struct {
	replicaRequests *prometheus.CounterVec
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
			Help: "Requests this node sent to other replicas, by peer, operation and outcome (ok, unreachable, error).",
		}, []string{"peer", "op", "outcome"}),
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
	reg.MustRegister(m.replicaRequests, m.readRepairs, m.standIns, m.hintsStored, m.hintsDelivered, m.hintsDropped)
	return m
}

func (m *Metrics) observeReplica(peer, op string, err error) {
	if m == nil {
		return
	}
	m.replicaRequests.WithLabelValues(peer, op, outcome(err)).Inc()
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

// HintsDropped counts hints dropped at the storage bound.
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
