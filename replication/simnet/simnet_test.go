package simnet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/simnet"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// node is a fake replica: it keeps what it is sent and records every call.
type node struct {
	mu     sync.Mutex
	stored map[string]*version.Object
	froms  []string
	// release, when set, blocks HandleCoordinate until closed, ignoring ctx.
	release chan struct{}
	// err, when set, is what every handler returns.
	err error
	// ctxSeen records the last handler context.
	ctxSeen context.Context
}

func newNode() *node { return &node{stored: make(map[string]*version.Object)} }

func (n *node) record(ctx context.Context, from string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.froms = append(n.froms, from)
	n.ctxSeen = ctx
	return n.err
}

func (n *node) calls() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.froms)
}

func (n *node) HandleFetch(ctx context.Context, from string, req replication.FetchRequest) (replication.FetchResponse, error) {
	if err := n.record(ctx, from); err != nil {
		return replication.FetchResponse{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return replication.FetchResponse{Object: n.stored[string(req.Key)]}, nil
}

func (n *node) HandleStore(ctx context.Context, from string, req replication.StoreRequest) (replication.StoreResponse, error) {
	if err := n.record(ctx, from); err != nil {
		return replication.StoreResponse{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stored[string(req.Key)] = version.Merge(n.stored[string(req.Key)], req.Object)
	// Scribble on what we were given: the caller must not see it.
	if len(req.Key) > 0 {
		req.Key[0] ^= 0xff
	}
	return replication.StoreResponse{}, nil
}

func (n *node) HandleCoordinate(ctx context.Context, from string, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	if err := n.record(ctx, from); err != nil {
		return replication.CoordinateResponse{}, err
	}
	n.mu.Lock()
	release := n.release
	n.mu.Unlock()
	if release != nil {
		<-release
	}
	obj, _ := (*version.Object)(nil).Write(1, req.Context, req.Value, req.ContentType, time.Unix(0, 1))
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stored[string(req.Key)] = obj
	return replication.CoordinateResponse{Object: obj, Context: obj.Clock}, nil
}

// HandleExchange answers as a replica whose tree is empty.
func (n *node) HandleExchange(ctx context.Context, from string, req replication.ExchangeRequest) (replication.ExchangeResponse, error) {
	if err := n.record(ctx, from); err != nil {
		return replication.ExchangeResponse{}, err
	}
	m, err := merkle.New(0).Reply(req.Message)
	return replication.ExchangeResponse{Message: m}, err
}

// HandleRange answers with every stored key in order, in one page.
func (n *node) HandleRange(ctx context.Context, from string, req replication.RangeRequest) (replication.RangeResponse, error) {
	if err := n.record(ctx, from); err != nil {
		return replication.RangeResponse{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var resp replication.RangeResponse
	for _, k := range slices.Sorted(maps.Keys(n.stored)) {
		if k > string(req.After) {
			resp.Items = append(resp.Items, replication.RangeItem{Key: []byte(k), Object: n.stored[k]})
		}
	}
	return resp, nil
}

func object(value string) *version.Object {
	o, _ := (*version.Object)(nil).Write(7, nil, []byte(value), "text/plain", time.Unix(0, 42))
	return o
}

func cluster(t *testing.T, seed uint64, ids ...string) (*simnet.Network, map[string]*node) {
	t.Helper()
	net := simnet.New(seed)
	nodes := make(map[string]*node)
	for _, id := range ids {
		nodes[id] = newNode()
		net.Register(id, nodes[id])
	}
	return net, nodes
}

func store(ctx context.Context, net *simnet.Network, from, to string) error {
	_, err := net.Transport(from).Store(ctx, to, replication.StoreRequest{Key: []byte("k"), Object: object("v")})
	return err
}

func TestCallsReachTheRightHandler(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b", "c")
	ctx := t.Context()
	tr := net.Transport("a")

	if _, err := tr.Store(ctx, "b", replication.StoreRequest{Partition: 3, Key: []byte("k"), Object: object("v")}); err != nil {
		t.Fatal(err)
	}
	got, err := tr.Fetch(ctx, "b", replication.FetchRequest{Partition: 3, Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Object.Equal(object("v")) || string(got.Object.Siblings[0].Value) != "v" {
		t.Fatalf("fetched %v", got.Object)
	}
	missing, err := tr.Fetch(ctx, "b", replication.FetchRequest{Key: []byte("nope")})
	if err != nil || missing.Object != nil {
		t.Fatalf("fetch of a missing key: %v, %v", missing.Object, err)
	}
	cr, err := net.Transport("c").Coordinate(ctx, "b", replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("x"), Value: []byte("y")})
	if err != nil || len(cr.Context) != 1 {
		t.Fatalf("coordinate: %v, %v", cr, err)
	}

	if want := []string{"a", "a", "a", "c"}; fmt.Sprint(nodes["b"].froms) != fmt.Sprint(want) {
		t.Fatalf("b saw calls from %v, want %v", nodes["b"].froms, want)
	}
	if nodes["a"].calls()+nodes["c"].calls() != 0 {
		t.Fatal("a call reached the wrong node")
	}
	if got, want := net.Calls(), map[string]int{"fetch": 2, "store": 1, "coordinate": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Calls() = %v, want %v", got, want)
	}
}

func TestRangeReachesTheHandler(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	ctx := t.Context()
	for _, k := range []string{"k2", "k1", "k3"} {
		if _, err := net.Transport("a").Store(ctx, "b", replication.StoreRequest{Key: []byte(k), Object: object(k)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := net.Transport("a").Range(ctx, "b", replication.RangeRequest{Partition: 1, After: []byte("k1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 2 || string(got.Items[0].Key) != "k2" || string(got.Items[1].Key) != "k3" || got.Next != nil {
		t.Fatalf("range answered %+v", got)
	}
	// The page is the caller's own.
	got.Items[0].Key[0] = 'X'
	got.Items[0].Object.Siblings[0].Value[0] = 'X'
	if s := nodes["b"].stored["k2"]; string(s.Siblings[0].Value) != "k2" {
		t.Fatalf("caller's mutation of a range page reached the stored copy: %q", s.Siblings[0].Value)
	}
	if n := net.Calls()[simnet.KindRange]; n != 1 {
		t.Fatalf("Calls()[range] = %d, want 1", n)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b", "c", "d")
	ctx := t.Context()
	reach := func(from, to string) bool {
		t.Helper()
		err := store(ctx, net, from, to)
		if err != nil && !errors.Is(err, replication.ErrUnreachable) {
			t.Fatalf("%s -> %s: %v", from, to, err)
		}
		return err == nil
	}

	net.Partition([]string{"a"}, []string{"b", "c"})
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"a", "b", false}, {"b", "a", false}, {"b", "c", true}, {"c", "b", true},
		{"a", "d", false}, {"d", "b", false},
		// "client" and "d" are named in no group, so they share one.
		{"client", "d", true}, {"client", "a", false},
	} {
		if got := reach(c.from, c.to); got != c.want {
			t.Errorf("partitioned: %s -> %s reachable = %v, want %v", c.from, c.to, got, c.want)
		}
	}
	if nodes["a"].calls() != 0 {
		t.Fatal("a handler ran across the partition")
	}

	net.Isolate("b")
	if reach("a", "b") || !reach("a", "c") || !reach("d", "a") {
		t.Error("Isolate(b) should cut b off and join everyone else")
	}

	net.Heal()
	for _, from := range []string{"a", "b", "c", "d"} {
		for _, to := range []string{"a", "b", "c", "d"} {
			if !reach(from, to) {
				t.Errorf("healed: %s -> %s unreachable", from, to)
			}
		}
	}
}

func TestUnregisteredIsUnreachable(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	ctx := t.Context()
	if err := store(ctx, net, "a", "ghost"); !errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("call to an unknown id: %v", err)
	}
	net.Unregister("b")
	if err := store(ctx, net, "a", "b"); !errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("call to a down node: %v", err)
	}
	if nodes["b"].calls() != 0 {
		t.Fatal("a down node's handler ran")
	}
	restarted := newNode()
	net.Register("b", restarted)
	if err := store(ctx, net, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if restarted.calls() != 1 || nodes["b"].calls() != 0 {
		t.Fatal("Register must replace the previous handler")
	}
}

func TestPauseBlocksUntilDeadlineOrResume(t *testing.T) {
	for _, paused := range []string{"b", "a"} { // the callee, then the caller
		t.Run(paused, func(t *testing.T) {
			net, nodes := cluster(t, 1, "a", "b")
			net.Pause(paused)

			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			defer cancel()
			if err := store(ctx, net, "a", "b"); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("paused call: %v, want DeadlineExceeded", err)
			}
			if nodes["b"].calls() != 0 {
				t.Fatal("a paused node's handler ran")
			}

			done := make(chan error, 1)
			go func() { done <- store(t.Context(), net, "a", "b") }()
			select {
			case err := <-done:
				t.Fatalf("call returned while paused: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			net.Resume(paused)
			if err := <-done; err != nil {
				t.Fatalf("resumed call: %v", err)
			}
			if nodes["b"].calls() != 1 {
				t.Fatalf("handler ran %d times, want 1", nodes["b"].calls())
			}
		})
	}
}

func TestHealResumesPausedNodes(t *testing.T) {
	net, _ := cluster(t, 1, "a", "b")
	net.Pause("b")
	done := make(chan error, 1)
	go func() { done <- store(t.Context(), net, "a", "b") }()
	net.Heal()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDropRate(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	ctx := t.Context()

	net.SetDropRate(1)
	for range 50 {
		if err := store(ctx, net, "a", "b"); !errors.Is(err, replication.ErrUnreachable) {
			t.Fatalf("drop rate 1: %v", err)
		}
	}
	if nodes["b"].calls() != 0 {
		t.Fatal("a dropped request reached its handler")
	}

	net.SetDropRate(0)
	for range 50 {
		if err := store(ctx, net, "a", "b"); err != nil {
			t.Fatalf("drop rate 0: %v", err)
		}
	}
	if got := net.Calls()["store"]; got != 100 {
		t.Fatalf("Calls()[store] = %d, want 100", got)
	}
}

func TestLostResponsesRanTheHandler(t *testing.T) {
	net, nodes := cluster(t, 7, "a", "b")
	net.SetDropRate(0.5)
	var delivered, lost int
	for range 200 {
		err := store(t.Context(), net, "a", "b")
		switch {
		case err == nil:
			delivered++
		case errors.Is(err, simnet.ErrResponseLost):
			if errors.Is(err, replication.ErrUnreachable) {
				t.Fatal("a lost response must not be ErrUnreachable")
			}
			delivered++
			lost++
		case errors.Is(err, replication.ErrUnreachable):
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if lost == 0 || delivered == 200 {
		t.Fatalf("drop rate 0.5 gave %d lost responses, %d of 200 delivered", lost, delivered)
	}
	if nodes["b"].calls() != delivered {
		t.Fatalf("handler ran %d times, %d requests were delivered", nodes["b"].calls(), delivered)
	}
}

func TestSeededDropsAreReproducible(t *testing.T) {
	outcomes := func(seed uint64) string {
		net, _ := cluster(t, seed, "a", "b")
		net.SetDropRate(0.3)
		var b bytes.Buffer
		for range 100 {
			err := store(t.Context(), net, "a", "b")
			switch {
			case err == nil:
				b.WriteByte('.')
			case errors.Is(err, replication.ErrUnreachable):
				b.WriteByte('u')
			default:
				b.WriteByte('l')
			}
		}
		return b.String()
	}
	first := outcomes(42)
	if again := outcomes(42); again != first {
		t.Fatalf("seed 42 gave\n%s\nthen\n%s", first, again)
	}
	if other := outcomes(43); other == first {
		t.Fatalf("seeds 42 and 43 gave the same drops: %s", first)
	}
}

func TestDelay(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	net.SetDelay(time.Hour, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := store(ctx, net, "a", "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed call: %v, want DeadlineExceeded", err)
	}
	if nodes["b"].calls() != 0 {
		t.Fatal("handler ran before the delay was over")
	}

	net.SetDelay(time.Millisecond, 2*time.Millisecond)
	start := time.Now()
	if err := store(t.Context(), net, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Millisecond {
		t.Fatalf("call took %v, below the minimum delay", d)
	}
}

func TestHandlerErrorsPassUnchanged(t *testing.T) {
	for _, sentinel := range []error{replication.ErrUnavailable, replication.ErrNoReplicas, fmt.Errorf("wrapped: %w", replication.ErrUnavailable)} {
		net, nodes := cluster(t, 1, "a", "b")
		nodes["b"].err = sentinel
		err := store(t.Context(), net, "a", "b")
		if err != sentinel || errors.Is(err, replication.ErrUnreachable) {
			t.Fatalf("got %v, want %v unchanged", err, sentinel)
		}
	}
}

func TestCallerStopsWaitingForSlowHandler(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	release := make(chan struct{})
	defer close(release)
	nodes["b"].release = release

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := net.Transport("a").Coordinate(ctx, "b", replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("k")})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

type ctxKey struct{}

func TestHandlerContextKeepsDeadlineNotValues(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.WithValue(t.Context(), ctxKey{}, "caller"), deadline)
	defer cancel()
	if err := store(ctx, net, "a", "b"); err != nil {
		t.Fatal(err)
	}
	hctx := nodes["b"].ctxSeen
	if dl, ok := hctx.Deadline(); !ok || !dl.Equal(deadline) {
		t.Fatalf("handler deadline %v, %v; want %v", dl, ok, deadline)
	}
	if hctx.Value(ctxKey{}) != nil {
		t.Fatal("a caller's context value reached the handler")
	}
}

func TestMessagesAreDeepCopied(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	ctx := t.Context()
	tr := net.Transport("a")

	key := []byte("k")
	obj := object("value")
	if _, err := tr.Store(ctx, "b", replication.StoreRequest{Key: key, Object: obj}); err != nil {
		t.Fatal(err)
	}
	if string(key) != "k" {
		t.Fatalf("the handler's write to its request key reached the caller: %q", key)
	}
	// The caller reuses its buffers after the call.
	obj.Siblings[0].Value[0] = 'X'
	obj.Clock[0].Counter = 99
	key[0] = 'z'
	stored := nodes["b"].stored["k"]
	if string(stored.Siblings[0].Value) != "value" || stored.Clock[0].Counter != 1 {
		t.Fatalf("caller's mutation reached the stored copy: %v %q", stored.Clock, stored.Siblings[0].Value)
	}

	// And the other way: what the caller got back is its own.
	got, err := tr.Fetch(ctx, "b", replication.FetchRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	got.Object.Siblings[0].Value[0] = 'Y'
	got.Object.Clock[0].Counter = 77
	if string(stored.Siblings[0].Value) != "value" || stored.Clock[0].Counter != 1 {
		t.Fatalf("caller's mutation of a response reached the stored copy: %v %q", stored.Clock, stored.Siblings[0].Value)
	}

	value := []byte("abc")
	cr, err := tr.Coordinate(ctx, "b", replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("c"), Value: value})
	if err != nil {
		t.Fatal(err)
	}
	value[0] = 'X'
	cr.Context[0].Counter = 55
	if s := nodes["b"].stored["c"]; string(s.Siblings[0].Value) != "abc" || s.Clock[0].Counter != 1 {
		t.Fatalf("coordinate request or response shares memory: %v %q", s.Clock, s.Siblings[0].Value)
	}
}

func TestInvalidObjectIsRejected(t *testing.T) {
	net, nodes := cluster(t, 1, "a", "b")
	bad := &version.Object{Siblings: []version.Sibling{{Dot: version.Dot{Actor: 1, Counter: 1}}}} // dot not covered by the clock
	_, err := net.Transport("a").Store(t.Context(), "b", replication.StoreRequest{Key: []byte("k"), Object: bad})
	if !errors.Is(err, version.ErrMalformed) || errors.Is(err, replication.ErrUnreachable) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	if nodes["b"].calls() != 0 {
		t.Fatal("an object that cannot be encoded reached the handler")
	}
}

// TestConcurrentChaos is for the race detector: many callers while the
// network changes underneath them.
func TestConcurrentChaos(t *testing.T) {
	ids := []string{"a", "b", "c"}
	net, _ := cluster(t, 3, ids...)
	net.SetDropRate(0.2)
	net.SetDelay(0, 200*time.Microsecond)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
				from, to := ids[(i+j)%3], ids[(i+2*j+1)%3]
				_ = store(ctx, net, from, to)
				_, _ = net.Transport(from).Fetch(ctx, to, replication.FetchRequest{Key: []byte("k")})
				cancel()
			}
		})
	}
	for range 20 {
		net.Partition([]string{"a"})
		net.Pause("b")
		net.Resume("b")
		net.Unregister("c")
		net.Register("c", newNode())
		net.Heal()
		net.SetDropRate(0.2)
		_ = net.Calls()
	}
	wg.Wait()
}
