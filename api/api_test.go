package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// testActor is the one coordinator of the fake: every write mints its dots.
const testActor version.Actor = 0xa1

// fakeService is an in-memory Service with real version semantics: writes go
// through version.Object.Write and Delete, so contexts and siblings behave as
// they do on a node. It records every call so tests can assert that rejected
// requests never reached it.
type fakeService struct {
	mu      sync.Mutex // guards every field below
	objects map[string]*version.Object
	clock   time.Time // the next write's time; each write advances it 1 s
	quorums node.Quorums
	ready   bool
	err     error // returned by Put, Get, GetLocal and Delete when set
	panics  bool  // every method panics when set
	// getDelay is how long Get takes: a slow replica, as the client sees it.
	getDelay time.Duration

	puts, deletes, gets, localGets int
	lastPut                        node.PutRequest
	lastGet                        node.GetRequest
	lastDelete                     node.DeleteRequest
	keyInfoKeys                    [][]byte

	cluster node.ClusterInfo
	ring    node.RingInfo

	leaves    int      // calls of Leave
	removed   []string // ids passed to Remove, in order
	leaveErr  error    // returned by Leave when set
	removeErr error    // returned by Remove when set
}

var _ Service = (*fakeService)(nil)

func newFakeService() *fakeService {
	return &fakeService{
		objects: map[string]*version.Object{},
		clock:   time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		quorums: node.Quorums{N: 3, R: 2, W: 2},
		ready:   true,
		cluster: node.ClusterInfo{
			ID: "node-a", N: 3, R: 2, W: 2, Partitions: 8,
			Members: []node.MemberInfo{
				{ID: "node-a", Addr: "10.0.0.1:8080", PeerAddr: "10.0.0.1:8081", GossipAddr: "10.0.0.1:7946", State: node.StateAlive,
					Partitions: 5, PartitionsInTransfer: 2, BytesMoved: 123456},
				{ID: "node-b", Addr: "10.0.0.2:8080", PeerAddr: "10.0.0.2:8081", GossipAddr: "10.0.0.2:7946", State: node.StateSuspect,
					Leaving: true, Partitions: 3},
				{ID: "node-<c>", Addr: "10.0.0.3:8080", PeerAddr: "10.0.0.3:8081", GossipAddr: "10.0.0.3:7946", State: node.StateDead},
			},
		},
		ring: node.RingInfo{
			Version: "r17", Partitions: 2, N: 2,
			PreferenceLists: [][]string{{"node-a", "node-b"}, {"node-b", "node-a"}},
		},
	}
}

func (f *fakeService) enter() {
	if f.panics {
		panic("fake service exploded")
	}
}

func (f *fakeService) Put(_ context.Context, req node.PutRequest) (version.Clock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.puts++
	f.lastPut = req
	if f.err != nil {
		return nil, f.err
	}
	var ctx version.Clock
	if req.HasContext {
		ctx = req.Context
	}
	next, _ := f.objects[string(req.Key)].Write(testActor, ctx, req.Value, req.ContentType, f.clock)
	f.clock = f.clock.Add(time.Second)
	f.objects[string(req.Key)] = next
	return next.Context(), nil
}

// PutVersion is Put, also telling the siblings the key holds after it.
func (f *fakeService) PutVersion(ctx context.Context, req node.PutRequest) (node.PutResult, error) {
	clock, err := f.Put(ctx, req)
	if err != nil {
		return node.PutResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := node.PutResult{Context: clock}
	if n := len(f.objects[string(req.Key)].Siblings); n > 1 {
		res.Siblings = n
	}
	return res, nil
}

func (f *fakeService) Get(_ context.Context, req node.GetRequest) (*version.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.gets++
	f.lastGet = req
	time.Sleep(f.getDelay) // the slowness under test, not a wait for an event
	if f.err != nil {
		return nil, f.err
	}
	return f.objects[string(req.Key)], nil
}

func (f *fakeService) GetLocal(key []byte) (*version.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.localGets++
	if f.err != nil {
		return nil, f.err
	}
	return f.objects[string(key)], nil
}

func (f *fakeService) Delete(_ context.Context, req node.DeleteRequest) (version.Clock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.deletes++
	f.lastDelete = req
	if f.err != nil {
		return nil, f.err
	}
	cur := f.objects[string(req.Key)]
	ctx := cur.Context() // no context: delete what the read saw
	if req.HasContext {
		ctx = req.Context
	}
	next := cur.Delete(ctx, time.Unix(1_700_000_000, 0))
	if len(next.Clock) > 0 {
		f.objects[string(req.Key)] = next
	}
	return next.Context(), nil
}

func (f *fakeService) Quorums() node.Quorums {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	return f.quorums
}

func (f *fakeService) Cluster() node.ClusterInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	return f.cluster
}

func (f *fakeService) KeyInfo(key []byte) node.KeyInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.keyInfoKeys = append(f.keyInfoKeys, key)
	return node.KeyInfo{Key: string(key), Partition: 5, PreferenceList: []string{"node-b", "node-a", "node-<c>"}}
}

func (f *fakeService) Ring() node.RingInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	return f.ring
}

func (f *fakeService) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	return f.ready
}

func (f *fakeService) Leave() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.leaves++
	return f.leaveErr
}

func (f *fakeService) Remove(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enter()
	f.removed = append(f.removed, id)
	return f.removeErr
}

// membershipCalls returns how many times Leave was called and the ids
// Remove was called with.
func (f *fakeService) membershipCalls() (leaves int, removed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leaves, append([]string(nil), f.removed...)
}

// set changes the fake's behaviour under its lock.
func (f *fakeService) set(fn func(f *fakeService)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// calls returns how many times each data method was called.
func (f *fakeService) calls() (puts, deletes, gets, localGets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts, f.deletes, f.gets, f.localGets
}

// testMaxValue is the value limit of the harness, small enough to test both
// sides of it cheaply.
const testMaxValue = 64

// harness is one handler over a fake service, with its registry and log.
type harness struct {
	t   testing.TB
	svc *fakeService
	reg *prometheus.Registry
	log *lockedBuffer
	h   http.Handler
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	svc := newFakeService()
	reg := prometheus.NewRegistry()
	logs := &lockedBuffer{}
	h := New(svc, Options{
		MaxValueBytes: testMaxValue,
		Registry:      reg,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return &harness{t: t, svc: svc, reg: reg, log: logs, h: h}
}

// do sends a request to the handler. target is the request-target as a
// client would write it (escaped); headers are name, value pairs.
func (h *harness) do(method, target, body string, headers ...string) *httptest.ResponseRecorder {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return h.serve(withHeaders(httptest.NewRequest(method, target, rd), headers...))
}

func (h *harness) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, req)
	return rec
}

func withHeaders(req *http.Request, headers ...string) *http.Request {
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return req
}

// rawPathRequest builds a request whose path the client sent as rawPath,
// even when rawPath is not valid percent-encoding (which httptest.NewRequest
// and Go's server refuse to parse).
func rawPathRequest(method, rawPath string) *http.Request {
	req := httptest.NewRequest(method, "/", nil)
	req.URL.Path = rawPath
	req.URL.RawPath = rawPath
	req.RequestURI = rawPath
	return req
}

// put stores value under the escaped key and returns the X-Context.
func (h *harness) put(escapedKey, value, contentType string, headers ...string) string {
	h.t.Helper()
	if contentType != "" {
		headers = append(headers, "Content-Type", contentType)
	}
	rec := h.do(http.MethodPut, "/keys/"+escapedKey, value, headers...)
	if rec.Code != http.StatusNoContent {
		h.t.Fatalf("PUT %s: status %d, body %s", escapedKey, rec.Code, rec.Body)
	}
	return rec.Header().Get("X-Context")
}

// wantError checks rec is the JSON error answer with status and code.
func wantError(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
	}
	if len(body) != 2 {
		t.Fatalf("error body %v: want exactly error and code", body)
	}
	if got, _ := body["code"].(string); got != code {
		t.Fatalf("code %q, want %q (body %v)", got, code, body)
	}
	if msg, _ := body["error"].(string); msg == "" {
		t.Fatalf("error body %v has no sentence", body)
	}
}

// lockedBuffer is a log sink safe for concurrent handlers.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestNewDefaults(t *testing.T) {
	// Zero options: a private registry, a discarding logger, 1 MiB values.
	h := New(newFakeService(), Options{})
	value := strings.Repeat("x", DefaultMaxValueBytes)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/keys/big", strings.NewReader(value)))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("PUT of exactly 1 MiB: status %d, body %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/keys/big", strings.NewReader(value+"x")))
	wantError(t, rec, http.StatusRequestEntityTooLarge, codeValueTooLarge)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "dynamo_http_requests_total") {
		t.Fatalf("/metrics of the private registry lacks request metrics:\n%s", rec.Body)
	}
}

func TestNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := New(newFakeService(), Options{Registry: reg})
	b := New(newFakeService(), Options{Registry: reg}) // must not panic
	for _, h := range []http.Handler{a, b} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	}
	if got := counterValue(t, reg, "/healthz", "GET", "200"); got != 2 {
		t.Fatalf("two handlers on one registry counted %v requests, want 2", got)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Requests slower than Options.SlowRequest are logged at Warn; others only
// at Debug.
func TestSlowRequestsLogged(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slowSvc := newFakeService()
	slowSvc.getDelay = 30 * time.Millisecond
	slow := New(slowSvc, Options{Logger: logger, SlowRequest: 10 * time.Millisecond})
	fast := New(newFakeService(), Options{Logger: logger, SlowRequest: time.Hour})
	for _, h := range []http.Handler{fast, slow} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/keys/k", nil))
	}
	if n := strings.Count(buf.String(), `msg="slow request"`); n != 1 {
		t.Fatalf("want exactly one slow request logged, got %d:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "route=/keys/*") || !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("slow request line lacks its route or level:\n%s", buf.String())
	}
}
