package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/client"
)

// fakeNodes are HTTP servers that answer like nodes from a scripted state:
// GET /cluster/ring with one partition (so every key is in partition 0),
// GET /cluster listing them, and /keys with the status each node is set to.
type fakeNodes struct {
	t       *testing.T
	servers []*httptest.Server
	ids     []string

	mu sync.Mutex // guards the fields below
	// order is the preference list of partition 0, as indexes.
	order   []int
	version string
	// status is what each node answers to /keys; 0 means 200 ("v") for a
	// GET and 204 otherwise.
	status []int
	// hang makes a node hold /keys requests until the client gives up.
	hang []bool
	// keyHits and ringHits count requests per node.
	keyHits, ringHits []int
	// released ends every hang, when the test ends.
	released chan struct{}
}

func newFakeNodes(t *testing.T, n int) *fakeNodes {
	f := &fakeNodes{t: t, version: "v1", status: make([]int, n), hang: make([]bool, n),
		keyHits: make([]int, n), ringHits: make([]int, n), released: make(chan struct{})}
	defer t.Cleanup(func() { close(f.released) }) // before the servers close
	for i := range n {
		f.ids = append(f.ids, string(rune('a'+i)))
		f.order = append(f.order, i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(i, w, r) }))
		t.Cleanup(srv.Close)
		f.servers = append(f.servers, srv)
	}
	return f
}

func (f *fakeNodes) addr(i int) string { return f.servers[i].Listener.Addr().String() }

func (f *fakeNodes) set(fn func(f *fakeNodes)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeNodes) hits() (keys, ring []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.keyHits...), append([]int(nil), f.ringHits...)
}

func (f *fakeNodes) serve(i int, w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	switch {
	case r.URL.Path == "/cluster/ring":
		f.ringHits[i]++
		list := make([]string, len(f.order))
		for j, o := range f.order {
			list[j] = f.ids[o]
		}
		body, _ := json.Marshal(map[string]any{"version": f.version, "partitions": 1, "n": len(list), "preference_lists": [][]string{list}})
		f.mu.Unlock()
		w.Write(body)
	case r.URL.Path == "/cluster":
		var members []map[string]any
		for j, id := range f.ids {
			members = append(members, map[string]any{"id": id, "addr": f.addr(j), "state": "alive"})
		}
		body, _ := json.Marshal(map[string]any{"id": f.ids[i], "n": 3, "r": 2, "w": 2, "partitions": 1, "members": members})
		f.mu.Unlock()
		w.Write(body)
	case strings.HasPrefix(r.URL.Path, "/keys/"):
		f.keyHits[i]++
		status, hang := f.status[i], f.hang[i]
		f.mu.Unlock()
		if hang {
			// The body is read first: only then does the server notice
			// a client that hung up.
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-f.released:
			}
			return
		}
		switch {
		case status >= 400:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			code := map[int]string{400: "bad_key", 404: "not_found", 500: "internal", 503: "unavailable"}[status]
			w.Write([]byte(`{"error":"scripted","code":"` + code + `"}`))
		case r.Method == http.MethodGet:
			w.Header().Set("X-Context", "ctx")
			w.Write([]byte("v"))
		default:
			w.Header().Set("X-Context", "ctx")
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		f.mu.Unlock()
		http.NotFound(w, r)
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		<-tick.C
	}
}

// The ring is fetched again once it is older than the refresh interval, by
// a request that does not wait for it; the next requests follow the new one.
func TestRingRefreshFollowsNewVersion(t *testing.T) {
	f := newFakeNodes(t, 3)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	c := newClient(t, []string{f.addr(2)}, client.WithClock(clock.Now), client.WithRingRefresh(10*time.Second))
	ctx := ctxFor(t)
	for range 3 {
		if _, err := c.Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if keys, _ := f.hits(); keys[0] != 3 {
		t.Fatalf("requests per node %v: want all 3 at the coordinator a", keys)
	}

	f.set(func(f *fakeNodes) { f.order, f.version = []int{1, 0, 2}, "v2" })
	clock.Advance(5 * time.Second)
	c.Get(ctx, "k") // young ring: no fetch
	if _, ring := f.hits(); ring[0]+ring[1]+ring[2] != 1 {
		t.Fatalf("ring fetched %v times before it was old", ring)
	}
	clock.Advance(5 * time.Second)
	c.Get(ctx, "k") // old ring: routed by it, while the new one is fetched
	eventually(t, 5*time.Second, func() bool { return client.RingVersion(c) == "v2" })
	for range 3 {
		c.Get(ctx, "k")
	}
	if keys, _ := f.hits(); keys[0] != 5 || keys[1] != 3 {
		t.Fatalf("requests per node %v: want the last 3 at the new coordinator b", keys)
	}
}

// A node that does not answer is retried on the next replica, and tried
// last by later requests until the refresh interval has passed.
func TestUnreachableNodeTriedLast(t *testing.T) {
	f := newFakeNodes(t, 3)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	c := newClient(t, []string{f.addr(1)}, client.WithClock(clock.Now), client.WithRingRefresh(time.Minute),
		client.WithRetry(3, time.Millisecond, time.Millisecond))
	ctx := ctxFor(t)
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	f.servers[0].Close() // the coordinator goes away: connection refused
	for range 4 {
		if _, err := c.Get(ctx, "k"); err != nil {
			t.Fatalf("with the coordinator gone: %v", err)
		}
	}
	if keys, _ := f.hits(); keys[1] != 4 || keys[2] != 0 {
		t.Fatalf("requests per node %v: want the 4 at b, the next replica", keys)
	}
}

func TestRetriesOn503ThenSucceeds(t *testing.T) {
	f := newFakeNodes(t, 2)
	f.set(func(f *fakeNodes) { f.status[0] = 503 })
	c := newClient(t, []string{f.addr(0)}, client.WithRetry(3, time.Millisecond, time.Millisecond))
	res, err := c.Get(ctxFor(t), "k")
	if err != nil || string(res.Value()) != "v" {
		t.Fatalf("%+v, %v", res, err)
	}
	if keys, _ := f.hits(); keys[0] != 1 || keys[1] != 1 {
		t.Fatalf("requests per node %v: want the 503 of a, then b", keys)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f := newFakeNodes(t, 2)
	f.set(func(f *fakeNodes) { f.status[0], f.status[1] = 503, 503 })
	c := newClient(t, []string{f.addr(0), f.addr(1)}, client.WithRouting(false),
		client.WithRetry(5, time.Millisecond, 4*time.Millisecond))
	_, err := c.Put(ctxFor(t), "k", []byte("v"))
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != "unavailable" || !e.Temporary() {
		t.Fatalf("err %v, want the last 503 as an *Error", err)
	}
	if keys, _ := f.hits(); keys[0]+keys[1] != 5 {
		t.Fatalf("%v attempts, want 5", keys)
	}
}

func TestNoRetryOnOtherAnswers(t *testing.T) {
	for _, status := range []int{400, 500} {
		f := newFakeNodes(t, 2)
		f.set(func(f *fakeNodes) { f.status[0], f.status[1] = status, status })
		c := newClient(t, []string{f.addr(0), f.addr(1)}, client.WithRouting(false))
		_, err := c.Get(ctxFor(t), "k")
		var e *client.Error
		if !errors.As(err, &e) || e.Status != status {
			t.Fatalf("status %d: err %v", status, err)
		}
		if keys, _ := f.hits(); keys[0]+keys[1] != 1 {
			t.Fatalf("status %d: %v attempts, want 1", status, keys)
		}
	}
}

// A cancelled context ends the back-off at once.
func TestCancelEndsBackoff(t *testing.T) {
	f := newFakeNodes(t, 1)
	f.set(func(f *fakeNodes) { f.status[0] = 503 })
	c := newClient(t, []string{f.addr(0)}, client.WithRouting(false), client.WithRetry(5, time.Hour, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, "k")
		done <- err
	}()
	eventually(t, 5*time.Second, func() bool { keys, _ := f.hits(); return keys[0] == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get still waiting to retry after its context was cancelled")
	}
}

// A node that hangs is given up after the attempt timeout.
func TestAttemptTimeout(t *testing.T) {
	f := newFakeNodes(t, 2)
	f.set(func(f *fakeNodes) { f.hang[0] = true })
	c := newClient(t, []string{f.addr(0), f.addr(1)}, client.WithRouting(false),
		client.WithAttemptTimeout(50*time.Millisecond), client.WithRetry(2, time.Millisecond, time.Millisecond))
	if _, err := c.Put(ctxFor(t), "k", []byte("v")); err != nil {
		t.Fatalf("with a hung node and a good one: %v", err)
	}
}

// Without a ring (no node serves one) requests go to the addresses given,
// and the ring is not asked for on every request.
func TestNoRingFallsBackToSeeds(t *testing.T) {
	var ringAsks atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/cluster") {
			ringAsks.Add(1)
			http.Error(w, `{"error":"no","code":"internal"}`, 500)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, []string{srv.Listener.Addr().String()})
	for range 50 {
		if _, err := c.Put(ctxFor(t), "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if n := ringAsks.Load(); n > 3 {
		t.Fatalf("the ring was asked for %d times by 50 requests", n)
	}
}

// A node that refuses connections among the addresses given: the others serve.
func TestDeadSeed(t *testing.T) {
	f := newFakeNodes(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	c := newClient(t, []string{dead, f.addr(0)}, client.WithRouting(false), client.WithRetry(2, time.Millisecond, time.Millisecond))
	for range 4 {
		if _, err := c.Get(ctxFor(t), "k"); err != nil {
			t.Fatal(err)
		}
	}
}
