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
	}
	reg.MustRegister(m.replicaRequests, m.readRepairs)
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

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnreachable):
		return "unreachable"
	}
	return "error"
}
