package api

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/replication"
)

// unmatchedRoute labels requests no route matched (404s), so that scanners
// probing random paths add one series, not one per path.
const unmatchedRoute = "unmatched"

// keysRoute is the route pattern of the key-value routes.
const keysRoute = keysPrefix + "*"

// httpMetrics are the request metrics of the client API.
type httpMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	valueSize prometheus.Histogram
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
			Name:                            "dynamo_http_request_duration_seconds",
			Help:                            "Client HTTP request latency by route pattern, method and status code.",
			Buckets:                         replication.LatencyBuckets,
			NativeHistogramBucketFactor:     replication.NativeBucketFactor,
			NativeHistogramMaxBucketNumber:  replication.NativeMaxBucketNumber,
			NativeHistogramMinResetDuration: replication.NativeMinResetDuration,
		}, []string{"route", "method", "code"})),
		valueSize: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dynamo_value_size_bytes",
			Help: "Sizes of the values clients stored: bodies of PUT " + keysRoute + " requests answered 2xx.",
			// 16 B to 64 MiB (the largest --max-value-bytes) by fours.
			Buckets:                         prometheus.ExponentialBuckets(16, 4, 12),
			NativeHistogramBucketFactor:     replication.NativeBucketFactor,
			NativeHistogramMaxBucketNumber:  replication.NativeMaxBucketNumber,
			NativeHistogramMinResetDuration: replication.NativeMinResetDuration,
		})),
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

// instrument counts and times every request under its chi route pattern,
// and records the size of every value a PUT stored.
func instrument(m *httpMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			var body *countingBody
			if r.Method == http.MethodPut && r.Body != nil {
				// The handler reads a stored value's body to the end, so
				// what it read is the value's size.
				body = &countingBody{ReadCloser: r.Body}
				r.Body = body
			}
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
				code := strconv.Itoa(status)
				m.requests.WithLabelValues(route, method, code).Inc()
				m.duration.WithLabelValues(route, method, code).Observe(time.Since(start).Seconds())
				if body != nil && route == keysRoute && status >= 200 && status < 300 {
					m.valueSize.Observe(float64(body.n))
				}
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// countingBody counts the bytes read from a request body. Handlers run on
// one goroutine, so n needs no lock.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
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
