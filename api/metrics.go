package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// unmatchedRoute labels requests no route matched (404s), so that scanners
// probing random paths add one series, not one per path.
const unmatchedRoute = "unmatched"

// httpMetrics are the request metrics of the client API.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newHTTPMetrics registers the request metrics on reg, reusing them when an
// earlier New already registered them there.
func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	return &httpMetrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_http_requests_total",
			Help: "Client HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dynamo_http_request_duration_seconds",
			Help: "Client HTTP request latency by route pattern and method.",
			// 0.5 ms to 10 s in 16 geometric steps (about x1.94 each), fine
			// enough to read p99 and p99.9 of both local and quorum requests.
			Buckets: prometheus.ExponentialBucketsRange(0.0005, 10, 16),
		}, []string{"route", "method"})),
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("api: registering request metrics: " + err.Error())
	}
	return c
}

// instrument counts and times every request under its chi route pattern.
func instrument(m *httpMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			// Deferred so that a request aborted by a panic is counted too.
			defer func() {
				route := chi.RouteContext(r.Context()).RoutePattern()
				if route == "" {
					route = unmatchedRoute
				}
				method := methodLabel(r.Method)
				status := ww.Status()
				if status == 0 {
					status = http.StatusOK // nothing written: net/http sends 200
				}
				m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
				m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// methodLabel bounds the method label: any method is a valid token, and a
// client must not be able to mint series.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "OTHER"
}
