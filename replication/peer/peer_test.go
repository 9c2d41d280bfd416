package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// fakeHandler records what it is sent and answers with canned values.
type fakeHandler struct {
	calls atomic.Int64

	mu       sync.Mutex
	from     string
	fetch    replication.FetchRequest
	store    replication.StoreRequest
	coord    replication.CoordinateRequest
	rng      replication.RangeRequest
	exchange replication.ExchangeRequest
	deadline time.Duration // time left on the handler's context, 0 when none

	fetchResp    replication.FetchResponse
	coordResp    replication.CoordinateResponse
	rangeResp    replication.RangeResponse
	exchangeResp replication.ExchangeResponse
	err          error
	// release, when set, blocks every handler until closed, ignoring ctx.
	release chan struct{}
}

func (f *fakeHandler) enter(ctx context.Context, from string) error {
	f.calls.Add(1)
	f.mu.Lock()
	f.from = from
	f.deadline = 0
	if dl, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(dl)
	}
	release := f.release
	f.mu.Unlock()
	if release != nil {
		<-release
	}
	return f.err
}

func (f *fakeHandler) HandleFetch(ctx context.Context, from string, req replication.FetchRequest) (replication.FetchResponse, error) {
	if err := f.enter(ctx, from); err != nil {
		return replication.FetchResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetch = req
	return f.fetchResp, nil
}

func (f *fakeHandler) HandleStore(ctx context.Context, from string, req replication.StoreRequest) (replication.StoreResponse, error) {
	if err := f.enter(ctx, from); err != nil {
		return replication.StoreResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store = req
	return replication.StoreResponse{}, nil
}

func (f *fakeHandler) HandleCoordinate(ctx context.Context, from string, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	if err := f.enter(ctx, from); err != nil {
		return replication.CoordinateResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.coord = req
	return f.coordResp, nil
}

func (f *fakeHandler) HandleRange(ctx context.Context, from string, req replication.RangeRequest) (replication.RangeResponse, error) {
	if err := f.enter(ctx, from); err != nil {
		return replication.RangeResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rng = req
	return f.rangeResp, nil
}

func (f *fakeHandler) HandleExchange(ctx context.Context, from string, req replication.ExchangeRequest) (replication.ExchangeResponse, error) {
	if err := f.enter(ctx, from); err != nil {
		return replication.ExchangeResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exchange = req
	return f.exchangeResp, nil
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

type testPeer struct {
	h   *fakeHandler
	tr  *Transport
	srv *httptest.Server
	ln  *countingListener
}

// startPeer serves h as node "b" and returns node "a"'s transport to it.
// Node "gone" resolves to a port nobody listens on.
func startPeer(t testing.TB, h *fakeHandler) *testPeer {
	t.Helper()
	return startPeerWith(t, NewServer(h).(*server), h)
}

func startPeerWith(t testing.TB, s *server, h *fakeHandler) *testPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := httptest.NewUnstartedServer(s)
	srv.Listener.Close()
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)

	closed := closedAddr(t)
	tr := NewTransport(Options{Self: "a", Resolve: func(id string) (string, bool) {
		switch id {
		case "b":
			return ln.Addr().String(), true
		case "gone":
			return closed, true
		}
		return "", false
	}})
	t.Cleanup(tr.Close)
	return &testPeer{h: h, tr: tr, srv: srv, ln: cl}
}

// closedAddr returns a loopback address with nothing listening.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func write(o *version.Object, actor version.Actor, value, ct string) *version.Object {
	o, _ = o.Write(actor, o.Context(), []byte(value), ct, time.Unix(1700000000, int64(actor)))
	return o
}

// testObjects covers the shapes an object takes on the wire.
var testObjects = sync.OnceValue(func() map[string]*version.Object {
	live := write(nil, 1, "hello", "text/plain")
	a := write(live, 2, "left", "text/plain")
	b, _ := live.Write(3, live.Context(), []byte("right"), "application/json", time.Unix(5, 0))
	return map[string]*version.Object{
		"nil":         nil,
		"empty value": write(nil, 1, "", ""),
		"live":        live,
		"siblings":    version.Merge(a, b),
		"tombstone":   live.Delete(live.Context(), time.Unix(1_700_000_000, 0)),
		"big":         write(nil, 9, strings.Repeat("x", 100<<10), "application/octet-stream"),
	}
})

// sameObject compares objects including values, which Object.Equal skips.
func sameObject(a, b *version.Object) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !a.Equal(b) {
		return false
	}
	for i := range a.Siblings {
		x, y := a.Siblings[i], b.Siblings[i]
		if !bytes.Equal(x.Value, y.Value) || x.ContentType != y.ContentType || x.Modified != y.Modified {
			return false
		}
	}
	return true
}

func TestRoundTripEveryMessage(t *testing.T) {
	p := startPeer(t, &fakeHandler{})
	ctx := t.Context()
	clock := version.Clock{{Actor: 1, Counter: 3}, {Actor: 1 << 60, Counter: 1 << 40}}

	for name, obj := range testObjects() {
		t.Run(name, func(t *testing.T) {
			for _, hint := range []string{"", "node-c", "node-c sole"} {
				hintFor, sole := strings.CutSuffix(hint, " sole")
				if _, err := p.tr.Store(ctx, "b", replication.StoreRequest{Partition: 255, Key: []byte("k/" + name), Object: obj, HintFor: hintFor, RingVersion: 7, Sole: sole}); err != nil {
					t.Fatal(err)
				}
				if p.h.from != "a" || p.h.store.Partition != 255 || string(p.h.store.Key) != "k/"+name ||
					!sameObject(p.h.store.Object, obj) || p.h.store.HintFor != hintFor || p.h.store.RingVersion != 7 || p.h.store.Sole != sole {
					t.Fatalf("store arrived as from=%q %+v", p.h.from, p.h.store)
				}
			}

			p.h.fetchResp = replication.FetchResponse{Object: obj}
			got, err := p.tr.Fetch(ctx, "b", replication.FetchRequest{Partition: 7, Key: []byte(name)})
			if err != nil {
				t.Fatal(err)
			}
			if p.h.fetch.Partition != 7 || string(p.h.fetch.Key) != name {
				t.Fatalf("fetch arrived as %+v", p.h.fetch)
			}
			if !sameObject(got.Object, obj) {
				t.Fatalf("fetched %v, want %v", got.Object, obj)
			}

			p.h.rangeResp = replication.RangeResponse{
				Items: []replication.RangeItem{{Key: []byte("k1/" + name), Object: obj}, {Key: []byte("k2"), Object: testObjects()["live"]}},
				Next:  []byte("k2"),
			}
			buckets := merkle.Diff{Depth: 12, Buckets: []uint32{3, 4, 5, 4000}}
			rr, err := p.tr.Range(ctx, "b", replication.RangeRequest{Partition: 9, After: []byte(name), MaxBytes: 1 << 20, RingVersion: 1 << 40, Buckets: &buckets})
			if err != nil {
				t.Fatal(err)
			}
			if p.h.rng.Partition != 9 || string(p.h.rng.After) != name || p.h.rng.MaxBytes != 1<<20 || p.h.rng.RingVersion != 1<<40 ||
				p.h.rng.Buckets == nil || p.h.rng.Buckets.Depth != 12 || !slices.Equal(p.h.rng.Buckets.Buckets, buckets.Buckets) {
				t.Fatalf("range arrived as %+v", p.h.rng)
			}
			if !sameRange(rr, p.h.rangeResp) {
				t.Fatalf("range answered %+v, want %+v", rr, p.h.rangeResp)
			}

			tree := merkle.New(4)
			tree.Set([]byte(name), merkle.Digest{}, obj.Digest())
			p.h.exchangeResp = replication.ExchangeResponse{Message: merkle.Message{LeafBits: 4, Depth: 2, Nodes: []uint32{1, 3}, Hashes: []merkle.Hash{7, 9}}}
			er, err := p.tr.Exchange(ctx, "b", replication.ExchangeRequest{Partition: 11, Message: tree.Start()})
			if err != nil {
				t.Fatal(err)
			}
			if p.h.exchange.Partition != 11 || p.h.exchange.Message.Hashes[0] != tree.Root() {
				t.Fatalf("exchange arrived as %+v", p.h.exchange)
			}
			if !slices.Equal(er.Message.Nodes, []uint32{1, 3}) || !slices.Equal(er.Message.Hashes, []merkle.Hash{7, 9}) || er.Message.Depth != 2 {
				t.Fatalf("exchange answered %+v", er.Message)
			}

			p.h.coordResp = replication.CoordinateResponse{Object: obj, Context: obj.Context()}
			cr, err := p.tr.Coordinate(ctx, "b", replication.CoordinateRequest{
				Op: replication.OpPut, Key: []byte(name), Value: []byte("v"), ContentType: "text/plain",
				Context: clock, HasContext: true, Quorum: 3,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !sameObject(cr.Object, obj) || !cr.Context.Equal(obj.Context()) {
				t.Fatalf("coordinate answered %v %v", cr.Object, cr.Context)
			}
		})
	}

	for _, req := range []replication.CoordinateRequest{
		{Op: replication.OpGet, Key: []byte("k"), Quorum: 1},
		{Op: replication.OpDelete, Key: []byte("k"), HasContext: true}, // empty clock, but present
		{Op: replication.OpPut, Key: []byte("k"), Value: []byte{}, Context: clock},
		{Op: replication.OpPut, Key: []byte("k"), Value: bytes.Repeat([]byte{0, 0xff}, 1000), ContentType: "a/b; c=d"},
	} {
		if _, err := p.tr.Coordinate(ctx, "b", req); err != nil {
			t.Fatal(err)
		}
		got := p.h.coord
		if got.Op != req.Op || !bytes.Equal(got.Key, req.Key) || !bytes.Equal(got.Value, req.Value) ||
			got.ContentType != req.ContentType || !got.Context.Equal(req.Context) ||
			got.HasContext != req.HasContext || got.Quorum != req.Quorum {
			t.Errorf("coordinate %+v arrived as %+v", req, got)
		}
	}
}

// A coordinator's sibling count crosses the wire when it is 2 or more; an
// answer without it (one version, or a coordinator built before the field)
// is the old encoding and decodes as 0; a count below 2 is never sent.
func TestCoordinateResponseSiblings(t *testing.T) {
	p := startPeer(t, &fakeHandler{})
	clock := version.Clock{{Actor: 1, Counter: 3}}
	for sent, want := range map[int]int{0: 0, 1: 0, 2: 2, 100: 100, 12345: 12345} {
		p.h.coordResp = replication.CoordinateResponse{Context: clock, Siblings: sent}
		got, err := p.tr.Coordinate(t.Context(), "b", replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("k")})
		if err != nil {
			t.Fatal(err)
		}
		if got.Siblings != want || !got.Context.Equal(clock) {
			t.Errorf("sent %d siblings, got %d with context %v; want %d", sent, got.Siblings, got.Context, want)
		}
	}
	old := appendClock(appendObject(nil, nil), clock) // the encoding before the field
	if r, err := decodeCoordinateResponse(old); err != nil || r.Siblings != 0 || !r.Context.Equal(clock) {
		t.Errorf("an answer without siblings decodes as %+v, %v", r, err)
	}
	for _, n := range []int{0, 1} {
		if _, err := decodeCoordinateResponse(appendInt(slices.Clone(old), n)); !errors.Is(err, errMalformed) {
			t.Errorf("siblings %d sent: err %v, want errMalformed", n, err)
		}
	}
	if _, err := decodeCoordinateResponse(append(appendInt(slices.Clone(old), 3), 0)); !errors.Is(err, errMalformed) {
		t.Errorf("bytes after siblings: err %v, want errMalformed", err)
	}
}

// sameRange compares range pages, telling a nil Next from an empty one.
func sameRange(a, b replication.RangeResponse) bool {
	if len(a.Items) != len(b.Items) || (a.Next == nil) != (b.Next == nil) ||
		!bytes.Equal(a.Next, b.Next) || a.Incomplete != b.Incomplete {
		return false
	}
	for i := range a.Items {
		if !bytes.Equal(a.Items[i].Key, b.Items[i].Key) || !sameObject(a.Items[i].Object, b.Items[i].Object) {
			return false
		}
	}
	return true
}

func TestRangeRoundTrip(t *testing.T) {
	p := startPeer(t, &fakeHandler{})
	ctx := t.Context()
	objs := testObjects()
	for name, resp := range map[string]replication.RangeResponse{
		"empty, last":          {},
		"empty, incomplete":    {Incomplete: true},
		"empty next":           {Items: []replication.RangeItem{{Key: []byte("a"), Object: objs["live"]}}, Next: []byte{}},
		"last page":            {Items: []replication.RangeItem{{Key: []byte("a"), Object: objs["tombstone"]}}},
		"more, incomplete":     {Items: []replication.RangeItem{{Key: []byte("a"), Object: objs["siblings"]}, {Key: []byte("b"), Object: objs["big"]}}, Next: []byte("b"), Incomplete: true},
		"nil object, no key":   {Items: []replication.RangeItem{{}}, Next: []byte{0}},
		"many small, complete": {Items: manyItems(5000, objs["empty value"]), Next: []byte("k4999")},
	} {
		t.Run(name, func(t *testing.T) {
			p.h.rangeResp = resp
			got, err := p.tr.Range(ctx, "b", replication.RangeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if !sameRange(got, resp) {
				t.Fatalf("got %+v, want %+v", got, resp)
			}
		})
	}
	// After: nil and empty both mean from the first key and arrive as nil.
	for _, req := range []replication.RangeRequest{{}, {Partition: 1, After: []byte{}, MaxBytes: 1}, {Partition: 1 << 20, After: []byte{0, 0xff}, MaxBytes: 64 << 20}} {
		if _, err := p.tr.Range(ctx, "b", req); err != nil {
			t.Fatal(err)
		}
		got := p.h.rng
		if got.Partition != req.Partition || !bytes.Equal(got.After, req.After) || got.MaxBytes != req.MaxBytes || (len(req.After) == 0 && got.After != nil) {
			t.Errorf("range %+v arrived as %+v", req, got)
		}
	}
}

func manyItems(n int, o *version.Object) []replication.RangeItem {
	items := make([]replication.RangeItem, n)
	for i := range items {
		items[i] = replication.RangeItem{Key: fmt.Appendf(nil, "k%d", i), Object: o}
	}
	return items
}

func TestHandlerErrorsMapToSentinels(t *testing.T) {
	for _, c := range []struct {
		err    error
		code   string
		status int
		is     error
	}{
		{replication.ErrUnavailable, CodeUnavailable, 503, replication.ErrUnavailable},
		{fmt.Errorf("put k: %w", replication.ErrNoReplicas), CodeNoReplicas, 503, replication.ErrNoReplicas},
		{fmt.Errorf("store: %w", replication.ErrNotReplica), CodeNotReplica, 409, replication.ErrNotReplica},
		{fmt.Errorf("local write: %w", replication.ErrTooManySiblings), CodeTooManySiblings, 409, replication.ErrTooManySiblings},
		{fmt.Errorf("stopping: %w", replication.ErrNotReady), CodeNotReady, 503, replication.ErrNotReady},
		{errors.New("disk on fire"), CodeInternal, 500, nil},
		// The remote node was reached; its own trouble reaching others is
		// not ours.
		{replication.ErrUnreachable, CodeInternal, 500, nil},
	} {
		p := startPeer(t, &fakeHandler{err: c.err})
		_, err := p.tr.Store(t.Context(), "b", replication.StoreRequest{Key: []byte("k")})
		re, ok := errors.AsType[*RemoteError](err)
		if !ok || re.Code != c.code || re.Status != c.status || re.Node != "b" {
			t.Fatalf("%v: got %#v", c.err, err)
		}
		if !strings.Contains(re.Message, c.err.Error()) {
			t.Errorf("message %q lost the handler's %q", re.Message, c.err)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("errors.Is(%v, %v) = false", err, c.is)
		}
		if errors.Is(err, replication.ErrUnreachable) {
			t.Errorf("%v: a handler's error must never read as ErrUnreachable", err)
		}
	}
}

func TestUnknownAndClosedAreUnreachable(t *testing.T) {
	p := startPeer(t, &fakeHandler{})
	for _, to := range []string{"nobody", "gone"} {
		_, err := p.tr.Fetch(t.Context(), to, replication.FetchRequest{Key: []byte("k")})
		if !errors.Is(err, replication.ErrUnreachable) {
			t.Errorf("call to %s: %v, want ErrUnreachable", to, err)
		}
	}
	// A dial that the context cuts short never reached anyone either.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.tr.Fetch(ctx, "b", replication.FetchRequest{}); err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v", err)
	}
	if p.h.calls.Load() != 0 {
		t.Fatal("handler ran")
	}
}

func TestDeadlineAgainstBlockedHandler(t *testing.T) {
	h := &fakeHandler{release: make(chan struct{})}
	p := startPeer(t, h)
	t.Cleanup(func() { close(h.release) }) // runs before the server closes

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.tr.Store(ctx, "b", replication.StoreRequest{Key: []byte("k")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("the request was written; its outcome is unknown, not unreachable: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call took %v", d)
	}
	h.mu.Lock()
	left := h.deadline
	h.mu.Unlock()
	if left <= 0 || left > 100*time.Millisecond {
		t.Fatalf("handler's context had %v left, want the caller's deadline", left)
	}
}

func post(t *testing.T, url, ct string, body []byte, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp, string(text)
}

func TestBadRequestsNeverReachTheHandler(t *testing.T) {
	p := startPeer(t, &fakeHandler{})
	from := map[string]string{HeaderFrom: "a"}
	valid := map[string][]byte{
		kindFetch:      appendFetchRequest(nil, replication.FetchRequest{Partition: 1, Key: []byte("key")}),
		kindStore:      appendStoreRequest(nil, replication.StoreRequest{Key: []byte("key"), Object: testObjects()["siblings"]}),
		kindCoordinate: appendCoordinateRequest(nil, replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("key"), Context: version.Clock{{Actor: 1, Counter: 1}}}),
		kindRange:      appendRangeRequest(nil, replication.RangeRequest{Partition: 1, After: []byte("key"), MaxBytes: 1 << 20}),
	}
	for kind, good := range valid {
		url := p.srv.URL + PathPrefix + kind
		bad := map[string][]byte{
			"empty":     {},
			"truncated": good[:len(good)-1],
			"trailing":  append(append([]byte(nil), good...), 0),
			"garbage":   bytes.Repeat([]byte{0xff}, 40),
		}
		for name, body := range bad {
			resp, text := post(t, url, contentType, body, from)
			if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(text, CodeBadRequest+"\n") {
				t.Errorf("%s %s: %d %q", kind, name, resp.StatusCode, text)
			}
		}
		if resp, text := post(t, url, contentType, good, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s without %s: %d %q", kind, HeaderFrom, resp.StatusCode, text)
		}
		if resp, text := post(t, url, contentType, good, map[string]string{HeaderFrom: "a", HeaderTimeout: "soon"}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s with a bad timeout: %d %q", kind, resp.StatusCode, text)
		}
		if resp, text := post(t, url, "application/json", good, from); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("%s as JSON: %d %q", kind, resp.StatusCode, text)
		}
	}
	if n := p.h.calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times on bad requests", n)
	}
	// The valid bodies are accepted, without a Content-Type too.
	for kind, good := range valid {
		if resp, text := post(t, p.srv.URL+PathPrefix+kind, "", good, from); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %q", kind, resp.StatusCode, text)
		}
	}
}

func TestRoutesAndMethods(t *testing.T) {
	p := startPeer(t, &fakeHandler{})
	for _, path := range []string{PathPrefix + kindFetch, PathPrefix + kindStore, PathPrefix + kindCoordinate, PathPrefix + kindRange} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(method, p.srv.URL+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("%s %s: %d, Allow %q", method, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	// Client routes and other versions are not served here.
	for _, path := range []string{"/keys/k", "/cluster", "/healthz", "/", "/peer/v2/fetch", "/peer/v2/range", PathPrefix, PathPrefix + "fetch/x", PathPrefix + "range/x"} {
		resp, text := post(t, p.srv.URL+path, contentType, nil, map[string]string{HeaderFrom: "a"})
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(text, CodeNotFound+"\n") {
			t.Errorf("POST %s: %d %q", path, resp.StatusCode, text)
		}
	}
	if p.h.calls.Load() != 0 {
		t.Fatal("handler ran")
	}
}

func TestBodyTooLarge(t *testing.T) {
	const limit = 1 << 20 // MaxBodyBytes is slow to send under the race detector
	h := &fakeHandler{}
	s := NewServer(h).(*server)
	s.maxBody = limit
	p := startPeerWith(t, s, h)
	req, _ := http.NewRequest(http.MethodPost, p.srv.URL+PathPrefix+kindStore, io.LimitReader(zeros{}, limit+1))
	req.ContentLength = -1 // chunked: the server finds out by reading
	req.Header.Set(HeaderFrom, "a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}

	// A declared length over the limit is refused before anything is read.
	req, _ = http.NewRequest(http.MethodPost, p.srv.URL+PathPrefix+kindStore, bytes.NewReader(make([]byte, limit+1)))
	req.Header.Set(HeaderFrom, "a")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if p.h.calls.Load() != 0 {
		t.Fatal("handler ran")
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func TestConnectionsAreReused(t *testing.T) {
	h := &fakeHandler{
		fetchResp: replication.FetchResponse{Object: testObjects()["siblings"]},
		rangeResp: replication.RangeResponse{Items: []replication.RangeItem{{Key: []byte("k"), Object: testObjects()["live"]}}, Next: []byte("k")},
	}
	p := startPeer(t, h)
	ctx := t.Context()
	for i := range 300 {
		var err error
		switch i % 4 {
		case 0:
			_, err = p.tr.Fetch(ctx, "b", replication.FetchRequest{Key: []byte("k")})
		case 1:
			_, err = p.tr.Store(ctx, "b", replication.StoreRequest{Key: []byte("k"), Object: testObjects()["live"]})
		case 2:
			_, err = p.tr.Coordinate(ctx, "b", replication.CoordinateRequest{Op: replication.OpGet, Key: []byte("k")})
		case 3:
			_, err = p.tr.Range(ctx, "b", replication.RangeRequest{Partition: 1, MaxBytes: 1 << 10})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Error answers keep the connection too.
	h.err = replication.ErrUnavailable
	for range 50 {
		if _, err := p.tr.Fetch(ctx, "b", replication.FetchRequest{}); !errors.Is(err, replication.ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if n := p.ln.accepted.Load(); n > 2 {
		t.Fatalf("350 sequential calls opened %d connections", n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	h := &fakeHandler{fetchResp: replication.FetchResponse{Object: testObjects()["siblings"]}}
	p := startPeer(t, h)
	want := testObjects()["siblings"]
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				got, err := p.tr.Fetch(t.Context(), "b", replication.FetchRequest{Key: []byte("k")})
				if err != nil || !sameObject(got.Object, want) {
					t.Errorf("fetch: %v %v", got.Object, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestRemoteErrorFromAnotherService(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	tr := NewTransport(Options{Self: "a", Resolve: func(string) (string, bool) { return srv.Listener.Addr().String(), true }})
	t.Cleanup(tr.Close)
	_, err := tr.Fetch(t.Context(), "b", replication.FetchRequest{})
	re, ok := errors.AsType[*RemoteError](err)
	if !ok || re.Code != "" || re.Status != 404 || errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("got %#v", err)
	}
}

func BenchmarkStoreRoundTrip(b *testing.B) {
	p := startPeer(b, &fakeHandler{})
	obj := write(nil, 1, string(bytes.Repeat([]byte{'v'}, 1<<10)), "application/octet-stream")
	req := replication.StoreRequest{Partition: 17, Key: []byte("bench/key"), Object: obj}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.tr.Store(ctx, "b", req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestResetAfterWriteIsNotUnreachable: a node that takes the request and
// then drops the connection may have acted on it.
func TestResetAfterWriteIsNotUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 64<<10))
			c.Close()
		}
	}()
	tr := NewTransport(Options{Self: "a", Resolve: func(string) (string, bool) { return ln.Addr().String(), true }})
	t.Cleanup(tr.Close)
	_, err = tr.Coordinate(t.Context(), "b", replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("k")})
	if err == nil || errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("got %v, want an outcome-unknown error", err)
	}
	_, err = tr.Store(t.Context(), "b", replication.StoreRequest{Key: []byte("k")})
	if err == nil || errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("got %v, want an outcome-unknown error", err)
	}
	_, err = tr.Range(t.Context(), "b", replication.RangeRequest{Partition: 1})
	if err == nil || errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("got %v, want an outcome-unknown error", err)
	}
}

// TestIdempotentCallsSurviveAStaleConnection: a kept-alive connection the
// server drops after reading the request is retried on a new one for the
// idempotent calls, and never for Coordinate.
func TestIdempotentCallsSurviveAStaleConnection(t *testing.T) {
	calls := map[string]func(*Transport) error{
		kindFetch: func(tr *Transport) error {
			_, err := tr.Fetch(t.Context(), "b", replication.FetchRequest{Key: []byte("k")})
			return err
		},
		kindStore: func(tr *Transport) error {
			_, err := tr.Store(t.Context(), "b", replication.StoreRequest{Key: []byte("k")})
			return err
		},
		kindRange: func(tr *Transport) error {
			_, err := tr.Range(t.Context(), "b", replication.RangeRequest{Partition: 1})
			return err
		},
		kindCoordinate: func(tr *Transport) error {
			_, err := tr.Coordinate(t.Context(), "b", replication.CoordinateRequest{Op: replication.OpGet, Key: []byte("k")})
			return err
		},
	}
	for kind, call := range calls {
		t.Run(kind, func(t *testing.T) {
			h := &fakeHandler{}
			peer := NewServer(h)
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 2 { // the second request, on the kept-alive connection
					_, _ = io.Copy(io.Discard, r.Body)
					c, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					c.Close()
					return
				}
				peer.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			tr := NewTransport(Options{Self: "a", Resolve: func(string) (string, bool) { return srv.Listener.Addr().String(), true }})
			t.Cleanup(tr.Close)

			if err := call(tr); err != nil {
				t.Fatal(err)
			}
			err := call(tr)
			if kind == kindCoordinate {
				if err == nil || errors.Is(err, replication.ErrUnreachable) {
					t.Fatalf("got %v, want an outcome-unknown error", err)
				}
				if h.calls.Load() != 1 {
					t.Fatalf("handler ran %d times, want 1", h.calls.Load())
				}
				return
			}
			if err != nil {
				t.Fatalf("not resent: %v", err)
			}
			if h.calls.Load() != 2 || n.Load() != 3 {
				t.Fatalf("handler ran %d times over %d requests, want 2 over 3", h.calls.Load(), n.Load())
			}
		})
	}
}

func TestListener(t *testing.T) {
	h := &fakeHandler{}
	l, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	tr := NewTransport(Options{Self: "a", Resolve: func(string) (string, bool) { return addr, true }})
	t.Cleanup(tr.Close)
	if _, err := tr.Store(t.Context(), "b", replication.StoreRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	// Profiles are served on the peer port; anything else is still a 404.
	for path, want := range map[string]int{"/debug/pprof/": 200, "/debug/pprof/heap": 200, "/keys/k": 404, "/": 404} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on the peer port: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Store(t.Context(), "b", replication.StoreRequest{Key: []byte("k")}); !errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("after Close: %v, want ErrUnreachable", err)
	}
	if h.calls.Load() != 1 {
		t.Fatalf("handler ran %d times", h.calls.Load())
	}
}

// A store's flags byte is sent only when set: without it, the bytes are
// those of a store from before the flag existed; a zero or unknown flags
// byte is no encoder's output.
func TestStoreRequestSoleFlag(t *testing.T) {
	plain := replication.StoreRequest{Partition: 3, Key: []byte("k"), HintFor: "c", RingVersion: 9}
	sole := plain
	sole.Sole = true
	a, b := appendStoreRequest(nil, plain), appendStoreRequest(nil, sole)
	if len(b) != len(a)+1 || !bytes.Equal(a, b[:len(a)]) || b[len(a)] != flagSole {
		t.Fatalf("sole store encodes as %x, plain as %x", b, a)
	}
	for _, in := range [][]byte{a, b} {
		got, err := decodeStoreRequest(in)
		if err != nil || got.Sole != (len(in) == len(b)) {
			t.Fatalf("decode %x = %+v, %v", in, got, err)
		}
	}
	for _, bad := range [][]byte{append(slices.Clone(a), 0), append(slices.Clone(a), 2), append(slices.Clone(b), 1)} {
		if _, err := decodeStoreRequest(bad); !errors.Is(err, errMalformed) {
			t.Errorf("decode %x: err = %v, want errMalformed", bad, err)
		}
	}
}
