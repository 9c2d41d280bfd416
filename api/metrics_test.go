package api

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics through the handler and parses the text format.
func scrape(t testing.TB, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	rec := h.do(http.MethodGet, "/metrics", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: status %d", rec.Code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("/metrics is not the text format: %v\n%s", err, rec.Body)
	}
	return families
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// counterValue reads dynamo_http_requests_total{route,method,code} from reg.
func counterValue(t testing.TB, reg *prometheus.Registry, route, method, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "dynamo_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelsOf(m)
			if l["route"] == route && l["method"] == method && l["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	h := newHarness(t)
	h.put("a/b", "v", "")
	h.put("c", "v", "")
	h.do(http.MethodGet, "/keys/a/b", "")
	h.do(http.MethodGet, "/keys/missing", "")
	h.do(http.MethodPost, "/keys/c", "")
	h.do(http.MethodGet, "/probe/random/path", "")
	h.do("BREW", "/cluster", "")

	families := scrape(t, h)
	requests := families["dynamo_http_requests_total"]
	if requests == nil || requests.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("no dynamo_http_requests_total counter in %v", families)
	}
	got := map[string]float64{}
	for _, m := range requests.GetMetric() {
		l := labelsOf(m)
		if len(l) != 3 {
			t.Fatalf("labels %v, want route, method and code", l)
		}
		if strings.Contains(l["route"], "missing") || strings.Contains(l["route"], "a/b") || strings.Contains(l["route"], "probe") {
			t.Fatalf("a raw path leaked into the route label: %v", l)
		}
		got[l["route"]+" "+l["method"]+" "+l["code"]] = m.GetCounter().GetValue()
	}
	for series, want := range map[string]float64{
		"/keys/* PUT 204":    2,
		"/keys/* GET 200":    1,
		"/keys/* GET 404":    1,
		"/keys/* POST 405":   1,
		"unmatched GET 404":  1,
		"/cluster OTHER 405": 1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v (all: %v)", series, got[series], want, got)
		}
	}

	duration := families["dynamo_http_request_duration_seconds"]
	if duration == nil || duration.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("no dynamo_http_request_duration_seconds histogram")
	}
	for _, m := range duration.GetMetric() {
		l := labelsOf(m)
		if len(l) != 2 || l["route"] == "" || l["method"] == "" {
			t.Fatalf("histogram labels %v, want route and method", l)
		}
		if l["route"] == "/keys/*" && l["method"] == "PUT" {
			if n := m.GetHistogram().GetSampleCount(); n != 2 {
				t.Fatalf("PUT /keys/* observed %d times, want 2", n)
			}
			if b := len(m.GetHistogram().GetBucket()); b < 12 {
				t.Fatalf("%d buckets: too coarse for p99.9", b)
			}
		}
	}
}

func TestAccessLog(t *testing.T) {
	h := newHarness(t) // logs at Debug
	h.do(http.MethodGet, "/keys/some%2Fkey", "")
	line := h.log.String()
	for _, want := range []string{"http request", "method=GET", "route=/keys/*", "status=404", "path=/keys/some%2Fkey"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %q:\n%s", want, line)
		}
	}

	var quiet bytes.Buffer
	hq := New(newFakeService(), Options{Logger: slog.New(slog.NewTextHandler(&quiet, nil))})
	hq.ServeHTTP(noopWriter{}, mustRequest(http.MethodGet, "/healthz"))
	if quiet.Len() != 0 {
		t.Fatalf("access log written at Info level: %s", quiet.String())
	}
}

type noopWriter struct{}

func (noopWriter) Header() http.Header         { return http.Header{} }
func (noopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (noopWriter) WriteHeader(int)             {}

func mustRequest(method, target string) *http.Request {
	r, err := http.NewRequest(method, target, nil)
	if err != nil {
		panic(err)
	}
	return r
}
