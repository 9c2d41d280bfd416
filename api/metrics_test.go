package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
	"github.com/dynamo-kv/dynamo/replication"
)

// scrape fetches /metrics through the handler and parses the text format.
func scrape(t testing.TB, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeHandler(t, h.h)
}

func scrapeHandler(t testing.TB, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
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

// seriesKey is a series' label values in the order given, space separated.
func seriesKey(m *dto.Metric, names ...string) string {
	l := labelsOf(m)
	values := make([]string, len(names))
	for i, n := range names {
		values[i] = l[n]
	}
	return strings.Join(values, " ")
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
		got[seriesKey(m, "route", "method", "code")] = m.GetCounter().GetValue()
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
		if len(l) != 3 || l["route"] == "" || l["method"] == "" || l["code"] == "" {
			t.Fatalf("histogram labels %v, want route, method and code", l)
		}
		key := seriesKey(m, "route", "method", "code")
		if n := m.GetHistogram().GetSampleCount(); float64(n) != got[key] {
			t.Errorf("%s observed %d times, counted %v", key, n, got[key])
		}
		// The text format adds the +Inf bucket.
		if b := len(m.GetHistogram().GetBucket()); b != len(replication.LatencyBuckets)+1 {
			t.Fatalf("%d buckets, want the %d of replication.LatencyBuckets and +Inf", b, len(replication.LatencyBuckets))
		}
	}

	sizes := families["dynamo_value_size_bytes"]
	if sizes == nil || len(sizes.GetMetric()) != 1 {
		t.Fatalf("no dynamo_value_size_bytes histogram")
	}
	if hist := sizes.GetMetric()[0].GetHistogram(); hist.GetSampleCount() != 2 || hist.GetSampleSum() != 2 {
		t.Fatalf("value sizes: %d values summing to %v bytes, want 2 values of 1 byte", hist.GetSampleCount(), hist.GetSampleSum())
	}
}

// A value rejected as too large, or a PUT refused before its body is read,
// is not a stored value: it adds no value size.
func TestValueSizesOnlyOfStoredValues(t *testing.T) {
	h := newHarness(t)
	h.do(http.MethodPut, "/keys/big", strings.Repeat("x", testMaxValue+1))
	h.do(http.MethodPut, "/keys/bad?w=zero", "value")
	h.put("ok", strings.Repeat("y", 50), "")
	hist := scrape(t, h)["dynamo_value_size_bytes"].GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 1 || hist.GetSampleSum() != 50 {
		t.Fatalf("value sizes: %d values, %v bytes; want only the stored 50-byte one", hist.GetSampleCount(), hist.GetSampleSum())
	}
}

// realNode starts a three-node in-process cluster and returns node-0 with
// the client API of it; the API's metrics share the node's registry, as in
// cmd/dynamo.
func realNode(t *testing.T) (*nodetest.Cluster, *node.Node, http.Handler) {
	t.Helper()
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	n := c.Node("node-0")
	h := New(n, Options{Registry: n.Registry(), Logger: discardLogger()})
	return c, n, h
}

// send serves one request and checks its status.
func send(t *testing.T, h http.Handler, method, target, body string, want int) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, rd))
	if rec.Code != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, target, rec.Code, want, rec.Body)
	}
}

// knownSequence is the scrape test's traffic: three PUTs (0, 100 and 5000
// bytes), a GET that finds a value and one that does not, a DELETE, and a
// bad request. Writes wait for every replica (w=all), so that reads find
// them everywhere and repair nothing.
func knownSequence(t *testing.T, h http.Handler) {
	t.Helper()
	send(t, h, http.MethodPut, "/keys/a?w=all", "", http.StatusNoContent)
	send(t, h, http.MethodPut, "/keys/b?w=all", strings.Repeat("b", 100), http.StatusNoContent)
	send(t, h, http.MethodPut, "/keys/c?w=all", strings.Repeat("c", 5000), http.StatusNoContent)
	send(t, h, http.MethodGet, "/keys/b", "", http.StatusOK)
	send(t, h, http.MethodGet, "/keys/never-written", "", http.StatusNotFound)
	send(t, h, http.MethodDelete, "/keys/a?w=all", "", http.StatusNoContent)
	send(t, h, http.MethodPut, "/keys/c?w=zero", "ignored", http.StatusBadRequest)
}

// poll calls cond until it returns nil or the deadline passes.
func poll(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// The metrics scrape test: after a known sequence of requests against a
// real node, every counter and histogram holds exactly what it should.
func TestMetricsScrape(t *testing.T) {
	_, _, h := realNode(t)
	knownSequence(t, h)

	// Replica requests beyond a quorum may finish after the client's
	// answer: wait for the last ones. Per peer, a store for each of the 3
	// PUTs and the DELETE. Reads ask only as many replicas as R needs (one
	// peer besides this node, one more when it is slow), so the 2 GETs and
	// the DELETE, which reads what it deletes, fetch 3 to 6 times in all.
	var families map[string]*dto.MetricFamily
	poll(t, 10*time.Second, func() error {
		families = scrapeHandler(t, h)
		counted := map[string]float64{}
		for _, m := range families["dynamo_replica_requests_total"].GetMetric() {
			if o := labelsOf(m)["outcome"]; o != "ok" {
				t.Fatalf("a replica request failed: %v", labelsOf(m))
			}
			counted[seriesKey(m, "peer", "op")] += m.GetCounter().GetValue()
		}
		observed := map[string]float64{}
		fetches := 0.0
		for _, m := range families["dynamo_replica_request_duration_seconds"].GetMetric() {
			key := seriesKey(m, "peer", "op")
			observed[key] = float64(m.GetHistogram().GetSampleCount())
			if labelsOf(m)["op"] == "fetch" {
				fetches += observed[key]
			}
		}
		switch {
		case !maps.Equal(counted, observed):
			return fmt.Errorf("replica requests counted %v but their latencies observed %v", counted, observed)
		case observed["node-1 store"] != 4 || observed["node-2 store"] != 4:
			return fmt.Errorf("replica stores %v, want 4 to each peer", observed)
		case fetches < 3 || fetches > 6:
			return fmt.Errorf("%v replica fetches, want 3 to 6 (%v)", fetches, observed)
		}
		return nil
	})
	// That scrape was not the first: the earlier ones are counted too.
	scrapes := counterOf(families, "dynamo_http_requests_total", "/metrics GET 200", "route", "method", "code")

	wantHTTP := map[string]float64{
		"/keys/* PUT 204":    3,
		"/keys/* GET 200":    1,
		"/keys/* GET 404":    1,
		"/keys/* DELETE 204": 1,
		"/keys/* PUT 400":    1,
	}
	if scrapes > 0 {
		wantHTTP["/metrics GET 200"] = scrapes
	}
	checkCounters(t, families, "dynamo_http_requests_total", wantHTTP, "route", "method", "code")
	checkHistogramCounts(t, families, "dynamo_http_request_duration_seconds", wantHTTP, "route", "method", "code")

	checkCounters(t, families, "dynamo_coordinator_requests_total", map[string]float64{
		"put ok": 3, "get ok": 2, "delete ok": 1,
	}, "op", "outcome")
	checkCounters(t, families, "dynamo_read_repairs_total", map[string]float64{"ok": 0, "error": 0}, "outcome")

	// Sizes 0, 100 and 5000: one value in each of the buckets up to 16,
	// 256 and 16384 bytes.
	sizes := histogramOf(t, families, "dynamo_value_size_bytes")
	if sizes.GetSampleCount() != 3 || sizes.GetSampleSum() != 5100 {
		t.Errorf("value sizes: %d values, %v bytes; want 3 values, 5100 bytes", sizes.GetSampleCount(), sizes.GetSampleSum())
	}
	for le, want := range map[float64]uint64{16: 1, 64: 1, 256: 2, 4096: 2, 16384: 3, 64 << 20: 3} {
		if got := cumulativeCount(sizes, le); got != want {
			t.Errorf("value sizes up to %v bytes: %d, want %d", le, got, want)
		}
	}
	// Only the GET that found a value observed siblings: one.
	siblings := histogramOf(t, families, "dynamo_read_siblings")
	if siblings.GetSampleCount() != 1 || siblings.GetSampleSum() != 1 {
		t.Errorf("siblings: %d reads, %v siblings; want 1 read with 1", siblings.GetSampleCount(), siblings.GetSampleSum())
	}

	// a's tombstone is a key until it is purged.
	if got := gaugeOf(families, "dynamo_storage_keys", ""); got != 3 {
		t.Errorf("dynamo_storage_keys = %v, want 3", got)
	}
	checkGauges(t, families, "dynamo_members", map[string]float64{"alive": 3, "suspect": 0, "dead": 0, "left": 0}, "state")
	for _, name := range []string{"dynamo_storage_file_bytes", "dynamo_storage_in_use_bytes"} {
		if gaugeOf(families, name, "") <= 0 {
			t.Errorf("%s is not positive", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_cpu_seconds_total"} {
		if families[name] == nil {
			t.Errorf("no %s: Go runtime and process collectors missing", name)
		}
	}
}

// Member counts follow states as membership reports them.
func TestMembersByState(t *testing.T) {
	c, _, h := realNode(t)
	c.SetState("node-2", node.StateDead)
	c.SetState("node-1", node.StateSuspect)
	checkGauges(t, scrapeHandler(t, h), "dynamo_members",
		map[string]float64{"alive": 1, "suspect": 1, "dead": 1, "left": 0}, "state")
}

// A scraper that asks for protobuf gets native histograms beside the
// classic buckets.
func TestNativeHistograms(t *testing.T) {
	_, _, h := realNode(t)
	knownSequence(t, h)

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	dec := expfmt.NewDecoder(rec.Body, expfmt.ResponseFormat(rec.Header()))
	native := map[string]bool{}
	for {
		var f dto.MetricFamily
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the protobuf exposition (%s): %v", rec.Header().Get("Content-Type"), err)
		}
		for _, m := range f.GetMetric() {
			hist := m.GetHistogram()
			if hist == nil || hist.Schema == nil {
				continue
			}
			if len(hist.GetBucket()) == 0 {
				t.Errorf("%s: native buckets but no classic ones", f.GetName())
			}
			if len(hist.GetPositiveSpan()) > 0 || hist.GetZeroCount() > 0 {
				native[f.GetName()] = true
			}
		}
	}
	for _, name := range []string{"dynamo_http_request_duration_seconds", "dynamo_replica_request_duration_seconds", "dynamo_value_size_bytes"} {
		if !native[name] {
			t.Errorf("%s has no native histogram in the protobuf exposition", name)
		}
	}
}

// promtool returns the path of Debian's promtool (package prometheus), or
// skips the test when it is not installed and DYNAMO_REQUIRE_PROMTOOL is
// not 1.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("DYNAMO_REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("DYNAMO_REQUIRE_PROMTOOL=1 but promtool is not on PATH (apt-get install prometheus): %v", err)
		}
		t.Skip("promtool is not on PATH; install Debian's prometheus package to run this test (DYNAMO_REQUIRE_PROMTOOL=1 fails instead of skipping)")
	}
	return path
}

// promtool check metrics finds nothing to complain about in a real node's
// /metrics, with every kind of series present: requests, replica requests,
// a hint for an unreachable replica.
func TestPromtoolCheckMetrics(t *testing.T) {
	bin := promtool(t)
	c, _, h := realNode(t)
	knownSequence(t, h)
	c.Isolate("node-2")
	defer c.Heal()
	send(t, h, http.MethodPut, "/keys/while-isolated", "v", http.StatusNoContent)

	var rec *httptest.ResponseRecorder
	poll(t, 10*time.Second, func() error {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for _, want := range []string{"dynamo_hints_pending{", "dynamo_replica_request_duration_seconds_bucket{", "go_goroutines ", "process_cpu_seconds_total "} {
			if !strings.Contains(rec.Body.String(), want) {
				return fmt.Errorf("the scrape lacks %q: the check would not cover it", want)
			}
		}
		return nil
	})
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(rec.Body.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}

	if out, err := exec.Command(bin, "check", "config", "../deploy/prometheus/prometheus.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check config deploy/prometheus/prometheus.yml: %v\n%s", err, out)
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashboardPanel `json:"panels"`
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"` // of a collapsed row
}

// The Grafana dashboard decodes, picks its data source by variable, and
// queries only metrics a node exports, covering those operators need.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/dashboards/dynamo.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title")
	}
	hasDatasourceVar := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDatasourceVar = true
		}
	}
	if !hasDatasourceVar {
		t.Errorf("no datasource variable of type prometheus")
	}

	exported := exportedMetrics(t)
	referenced := map[string]bool{}
	ids := map[int]bool{}
	var panels []dashboardPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: gridPos %+v off the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			names := promqlMetricNames(target.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, target.Expr)
			}
			for _, name := range names {
				referenced[name] = true
				if !exported.has(name) {
					t.Errorf("panel %q queries %s, which a node does not export (in %q)", p.Title, name, target.Expr)
				}
			}
		}
	}
	for _, want := range []string{
		"dynamo_http_requests_total", "dynamo_http_request_duration_seconds_bucket",
		"dynamo_coordinator_requests_total", "dynamo_read_siblings_bucket", "dynamo_value_size_bytes_bucket",
		"dynamo_replica_request_duration_seconds_bucket",
		"dynamo_hints_pending", "dynamo_hints_stored_total", "dynamo_hints_delivered_total", "dynamo_hints_dropped_total",
		"dynamo_read_repairs_total", "dynamo_antientropy_exchanges_total", "dynamo_antientropy_sync_age_seconds",
		"dynamo_partitions_in_transfer", "dynamo_partition_transfer_bytes_total", "dynamo_members",
		"dynamo_storage_file_bytes", "dynamo_storage_keys", "go_memstats_heap_inuse_bytes", "go_goroutines",
	} {
		if !referenced[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// metricSet is what a node exports: every metric name its registry
// describes, and the type of those it has series of.
type metricSet struct {
	names map[string]bool
	types map[string]dto.MetricType
}

// has reports whether PromQL may select name: an exported metric, or a
// histogram's (or untyped, since Describe tells no type) _bucket, _sum or
// _count series.
func (s metricSet) has(name string) bool {
	if s.names[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok || !s.names[base] {
			continue
		}
		typ, known := s.types[base]
		if !known || typ == dto.MetricType_HISTOGRAM || (typ == dto.MetricType_SUMMARY && suffix != "_bucket") {
			return true
		}
	}
	return false
}

// descName reads a descriptor's name; client_golang has no accessor, but
// Desc.String has begun with it for years. The test checks that it found
// the names it must.
var descName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

// exportedMetrics collects the metric names of a real node with its client
// API, from the registry's descriptors, so that vectors with no series yet
// (anti-entropy exchanges on a fresh node) count too.
func exportedMetrics(t *testing.T) metricSet {
	t.Helper()
	_, n, h := realNode(t)
	send(t, h, http.MethodPut, "/keys/k", "v", http.StatusNoContent)
	reg := n.Registry()
	s := metricSet{names: map[string]bool{}, types: map[string]dto.MetricType{}}
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	for desc := range ch {
		if m := descName.FindStringSubmatch(desc.String()); m != nil {
			s.names[m[1]] = true
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		s.names[f.GetName()] = true
		s.types[f.GetName()] = f.GetType()
	}
	for _, must := range []string{"dynamo_antientropy_exchanges_total", "dynamo_http_requests_total", "go_goroutines"} {
		if !s.names[must] {
			t.Fatalf("the registry's descriptors lack %s: has Desc.String changed? names: %v", must, slices.Sorted(maps.Keys(s.names)))
		}
	}
	return s
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlBraces   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]|\$\{?\w+\}?`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// promqlKeywords are identifiers in PromQL that are not metric names when
// not followed by "(" (functions and aggregations always are).
var promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}

// promqlMetricNames returns the metric names a PromQL expression selects:
// what is left once strings, label matchers, ranges, template variables and
// grouping clauses are removed, and function calls and numbers skipped.
func promqlMetricNames(expr string) []string {
	expr = promqlStrings.ReplaceAllString(expr, " ")
	expr = promqlBraces.ReplaceAllString(expr, " ")
	expr = promqlGrouping.ReplaceAllString(expr, " ")
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(expr, -1) {
		word := expr[loc[0]:loc[1]]
		if loc[0] > 0 && (isDigit(expr[loc[0]-1]) || expr[loc[0]-1] == '.') {
			continue // an exponent or the tail of a number: 1e3
		}
		if promqlKeywords[strings.ToLower(word)] || strings.HasPrefix(strings.TrimLeft(expr[loc[1]:], " \t\n"), "(") {
			continue
		}
		names = append(names, word)
	}
	return names
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func TestPromqlMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (route, code) (rate(dynamo_http_requests_total{instance=~"$instance", code=~"[45].."}[$__rate_interval]))`: {"dynamo_http_requests_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m])))`:                                                {"x_bucket"},
		`sum(rate(a_sum[1m])) / sum(rate(a_count[1m])) > 1e3 and on (instance) up`:                                         {"a_sum", "a_count", "up"},
		`max by (instance) (dynamo_antientropy_sync_age_seconds{instance=~"${instance}"})`:                                 {"dynamo_antientropy_sync_age_seconds"},
	} {
		if got := promqlMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}

// counterOf returns the value of one series of a counter family.
func counterOf(families map[string]*dto.MetricFamily, name, series string, labels ...string) float64 {
	for _, m := range families[name].GetMetric() {
		if seriesKey(m, labels...) == series {
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// gaugeOf returns the value of one series of a gauge family.
func gaugeOf(families map[string]*dto.MetricFamily, name, series string, labels ...string) float64 {
	for _, m := range families[name].GetMetric() {
		if seriesKey(m, labels...) == series {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// checkCounters checks that a counter has exactly the series in want.
func checkCounters(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]float64, labels ...string) {
	t.Helper()
	got := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		got[seriesKey(m, labels...)] = m.GetCounter().GetValue()
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s by %v = %v, want %v", name, labels, got, want)
	}
}

func checkGauges(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]float64, labels ...string) {
	t.Helper()
	got := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		got[seriesKey(m, labels...)] = m.GetGauge().GetValue()
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s by %v = %v, want %v", name, labels, got, want)
	}
}

// checkHistogramCounts checks that a histogram has exactly the series in
// want, each with that many observations, and well-formed classic buckets.
func checkHistogramCounts(t *testing.T, families map[string]*dto.MetricFamily, name string, want map[string]float64, labels ...string) {
	t.Helper()
	got := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		hist := m.GetHistogram()
		key := seriesKey(m, labels...)
		got[key] = float64(hist.GetSampleCount())
		var prev uint64
		for _, b := range hist.GetBucket() {
			if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > hist.GetSampleCount() {
				t.Errorf("%s{%s}: bucket le=%v holds %d after %d, of %d", name, key, b.GetUpperBound(), b.GetCumulativeCount(), prev, hist.GetSampleCount())
			}
			prev = b.GetCumulativeCount()
		}
		if hist.GetSampleCount() > 0 && hist.GetSampleSum() <= 0 {
			t.Errorf("%s{%s}: %d observations summing to %v", name, key, hist.GetSampleCount(), hist.GetSampleSum())
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s observations by %v = %v, want %v", name, labels, got, want)
	}
}

func histogramOf(t *testing.T, families map[string]*dto.MetricFamily, name string) *dto.Histogram {
	t.Helper()
	f := families[name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: want one histogram series, got %v", name, f)
	}
	return f.GetMetric()[0].GetHistogram()
}

// cumulativeCount is how many observations a histogram holds up to le.
func cumulativeCount(h *dto.Histogram, le float64) uint64 {
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	return 0
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
