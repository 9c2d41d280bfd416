package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dynamo-kv/dynamo/client"
	"github.com/dynamo-kv/dynamo/node"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newCluster(t *testing.T, n int, adjust func(*node.Config)) *localNodes {
	t.Helper()
	c := startLocalNodes(n, adjust)
	t.Cleanup(c.Close)
	return c
}

func newClient(t *testing.T, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// oddKeys are keys whose bytes an HTTP path could misread.
var oddKeys = []string{
	"a/b", "a//b", "/lead", "trail/", ".", "..", "./x", "a/../b", "%2F", "a%2Fb", "%252F", "sp ace", "plus+",
	"q?x=1", "frag#x", "semi;colon", "ü-ñ-漢", "tab\there", "new\nline", "\x01\x7f\xff", strings.Repeat("k", 1024),
}

// The client places every key where the nodes do: same partition, same
// preference list.
func TestPlacementMatchesNodes(t *testing.T) {
	nodes := newCluster(t, 4, nil)
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	keys := slices.Clone(oddKeys)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		keys = append(keys, fmt.Sprintf("key-%d-%x", i, rng.Uint64()))
	}
	for _, key := range keys {
		p, replicas, ok := client.Placement(ctx, c, key)
		if !ok {
			t.Fatal("the client has no ring")
		}
		info, err := c.KeyInfo(ctx, key)
		if err != nil {
			t.Fatalf("KeyInfo(%q): %v", key, err)
		}
		// JSON strings carry only UTF-8: the node echoes other bytes as U+FFFD.
		if (utf8.ValidString(key) && info.Key != key) || info.Partition != p || !slices.Equal(info.PreferenceList, replicas) {
			t.Fatalf("key %q: client places it in %d %v, the node says %q in %d %v",
				key, p, replicas, info.Key, info.Partition, info.PreferenceList)
		}
	}
}

// With N=3 of 4 nodes, every request of a routed client lands on its key's
// coordinator, so none is forwarded; round robin lands on every node.
func TestRequestsGoToTheCoordinator(t *testing.T) {
	nodes := newCluster(t, 4, nil)
	ctx := ctxFor(t)
	routed := newClient(t, nodes.Addrs())
	index := map[string]int{}
	for i := range 4 {
		index[fmt.Sprintf("node-%d", i)] = i
	}
	want := make([]int64, 4)
	for i := range 100 {
		key := fmt.Sprintf("k%d", i)
		if _, err := routed.Put(ctx, key, []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := routed.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
		info, err := routed.KeyInfo(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		want[index[info.PreferenceList[0]]] += 2
	}
	if got := nodes.KeyRequests(); !slices.Equal(got, want) {
		t.Fatalf("/keys requests per node %v, want %v (each key's two at its coordinator)", got, want)
	}

	before := nodes.KeyRequests()
	roundRobin := newClient(t, nodes.Addrs(), client.WithRouting(false))
	for i := range 40 {
		if _, err := roundRobin.Get(ctx, fmt.Sprintf("k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes.KeyRequests() {
		if n-before[i] != 10 {
			t.Fatalf("round robin: node %d got %d of 40 requests, want 10", i, n-before[i])
		}
	}
}

func TestOddKeys(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	for i, key := range oddKeys {
		if _, err := c.Put(ctx, key, []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	// Each key is its own: "a/b" and "a%2Fb", "." and "..", are different keys.
	for i, key := range oddKeys {
		res, err := c.Get(ctx, key)
		if err != nil || string(res.Value()) != fmt.Sprint(i) || res.Key != key {
			t.Fatalf("Get(%q): %v, %+v", key, err, res)
		}
	}
}

func TestSiblingsKeepTheirContentTypes(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	binary := []byte{0, 1, 2, 0xff, '\r', '\n', '-', '-'}
	if _, err := c.Put(ctx, "k", []byte(`{"a":1}`), client.ContentType("application/json")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", binary); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", nil, client.ContentType("text/plain")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Conflict() || res.Value() != nil || res.Context == "" || res.ETag == "" {
		t.Fatalf("result %+v: want three siblings, a context and an ETag", res)
	}
	got := map[string]string{}
	for _, s := range res.Siblings {
		got[s.ContentType] = string(s.Value)
		if s.LastModified.IsZero() || time.Since(s.LastModified) > time.Minute {
			t.Errorf("sibling %q: LastModified %v", s.Value, s.LastModified)
		}
	}
	want := map[string]string{"application/json": `{"a":1}`, "application/octet-stream": string(binary), "text/plain": ""}
	if len(res.Siblings) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("siblings %q, want %q", got, want)
	}
}

func TestGetResolve(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	calls := 0
	concat := func(s []client.Sibling) ([]byte, string, error) {
		calls++
		var parts [][]byte
		for _, sib := range s {
			parts = append(parts, sib.Value)
		}
		slices.SortFunc(parts, bytes.Compare)
		return bytes.Join(parts, []byte("+")), "text/x-merged", nil
	}

	// Not found: no merge, ErrNotFound.
	if _, err := c.GetResolve(ctx, "k", concat); !errors.Is(err, client.ErrNotFound) || calls != 0 {
		t.Fatalf("missing key: err %v, %d merges", err, calls)
	}
	// One value: returned as read, no merge, no write.
	written, err := c.Put(ctx, "k", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.GetResolve(ctx, "k", concat)
	if err != nil || calls != 0 || string(res.Value()) != "a" || res.Context != written {
		t.Fatalf("one value: %+v, %v, %d merges", res, err, calls)
	}
	// Siblings: merged, written back, the context returned is the write's.
	if _, err := c.Put(ctx, "k", []byte("b")); err != nil {
		t.Fatal(err)
	}
	res, err = c.GetResolve(ctx, "k", concat)
	if err != nil || calls != 1 || string(res.Value()) != "a+b" || res.Siblings[0].ContentType != "text/x-merged" {
		t.Fatalf("siblings: %+v, %v, %d merges", res, err, calls)
	}
	read, err := c.Get(ctx, "k")
	if err != nil || string(read.Value()) != "a+b" || read.Context != res.Context {
		t.Fatalf("read after resolving: %+v, %v (GetResolve's context %q)", read, err, res.Context)
	}
	// A failing merge writes nothing.
	if _, err := c.Put(ctx, "k", []byte("c")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	_, err = c.GetResolve(ctx, "k", func([]client.Sibling) ([]byte, string, error) { return nil, "", boom })
	if !errors.Is(err, boom) {
		t.Fatalf("failing merge: err %v", err)
	}
	if res, _ := c.Get(ctx, "k"); len(res.Siblings) != 2 {
		t.Fatalf("after a failed merge: %d siblings, want the 2 untouched", len(res.Siblings))
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	res, err := c.Get(ctx, "never")
	if !errors.Is(err, client.ErrNotFound) || res == nil || res.Context != "" || len(res.Siblings) != 0 {
		t.Fatalf("never written: %+v, %v", res, err)
	}
	if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	tomb, err := c.Delete(ctx, "k")
	if err != nil || tomb == "" {
		t.Fatalf("Delete: %q, %v", tomb, err)
	}
	res, err = c.Get(ctx, "k")
	if !errors.Is(err, client.ErrNotFound) || res.Context != tomb {
		t.Fatalf("deleted: %+v, %v; want ErrNotFound with the tombstone's context %q", res, err, tomb)
	}
	// Writing with the tombstone's context: exactly the new value.
	if _, err := c.Put(ctx, "k", []byte("again"), client.CausalContext(res.Context)); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Get(ctx, "k"); err != nil || string(res.Value()) != "again" {
		t.Fatalf("after writing again: %+v, %v", res, err)
	}
	if _, err := c.Delete(ctx, "never-existed"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
}

func TestNodeErrorsAreReturned(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	var e *client.Error
	if _, err := c.Put(ctx, "k", []byte("v"), client.W(4)); !errors.As(err, &e) || e.Status != 400 || e.Code != "bad_quorum" || e.Temporary() {
		t.Fatalf("w=4 of N=3: %v", err)
	}
	if _, err := c.Put(ctx, "k", []byte("v"), client.CausalContext("not a context")); !errors.As(err, &e) || e.Code != "bad_context" {
		t.Fatalf("bad context: %v", err)
	}
	if _, err := c.Get(ctx, ""); !errors.As(err, &e) || e.Code != "bad_key" {
		t.Fatalf("empty key: %v", err)
	}
	for _, q := range []int{1, 2, 3, client.QuorumOne, client.QuorumMajority, client.QuorumAll} {
		if _, err := c.Put(ctx, "k", []byte("v"), client.W(q)); err != nil {
			t.Fatalf("w=%d: %v", q, err)
		}
		if _, err := c.Get(ctx, "k", client.R(q)); err != nil {
			t.Fatalf("r=%d: %v", q, err)
		}
	}
}

// A dead coordinator costs the first request a retry; later ones skip it.
func TestFailover(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	ctx := ctxFor(t)
	c := newClient(t, nodes.Addrs())
	info, err := c.KeyInfo(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var dead int
	fmt.Sscanf(info.PreferenceList[0], "node-%d", &dead)
	nodes.Kill(dead)
	for i := range 20 {
		if _, err := c.Put(ctx, "k", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("put %d with the coordinator dead: %v", i, err)
		}
	}
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatalf("get with the coordinator dead: %v", err)
	}
}

// Many goroutines share one client (run with -race).
func TestConcurrentUse(t *testing.T) {
	nodes := newCluster(t, 3, nil)
	c := newClient(t, nodes.Addrs(), client.WithRingRefresh(time.Millisecond))
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				key := fmt.Sprintf("g%d-%d", g, i%5)
				res, err := c.Get(ctx, key)
				if err != nil && !errors.Is(err, client.ErrNotFound) {
					errs <- err
					return
				}
				if _, err := c.Put(ctx, key, []byte(fmt.Sprint(i)), client.CausalContext(res.Context)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Each goroutine read before writing, alone on its keys: no siblings.
	for g := range 8 {
		for i := range 5 {
			if res, err := c.Get(ctx, fmt.Sprintf("g%d-%d", g, i)); err != nil || res.Conflict() {
				t.Fatalf("g%d-%d: %+v, %v", g, i, res, err)
			}
		}
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	for _, tt := range []struct {
		addrs []string
		opts  []client.Option
	}{
		{addrs: nil},
		{addrs: []string{"127.0.0.1"}},
		{addrs: []string{"ftp://127.0.0.1:1"}},
		{addrs: []string{"http://127.0.0.1:1/prefix"}},
		{addrs: []string{"127.0.0.1:1"}, opts: []client.Option{client.WithRetry(0, 0, 0)}},
		{addrs: []string{"127.0.0.1:1"}, opts: []client.Option{client.WithRetry(3, time.Second, time.Millisecond)}},
		{addrs: []string{"127.0.0.1:1"}, opts: []client.Option{client.WithRingRefresh(0)}},
		{addrs: []string{"127.0.0.1:1"}, opts: []client.Option{client.WithAttemptTimeout(-1)}},
	} {
		if _, err := client.New(tt.addrs, tt.opts...); err == nil {
			t.Errorf("New(%q, %d options) accepted", tt.addrs, len(tt.opts))
		}
	}
	for _, addr := range []string{"127.0.0.1:1", "http://127.0.0.1:1", "http://127.0.0.1:1/", "https://h:443", "[::1]:8080"} {
		if _, err := client.New([]string{addr}); err != nil {
			t.Errorf("New(%q): %v", addr, err)
		}
	}
}

// Local reads the answering node's own copy: a replica's holds the value,
// a non-replica's nothing, where a quorum read through it finds the value.
func TestLocalReadsOneNodesCopy(t *testing.T) {
	nodes := newCluster(t, 4, nil)
	ctx := ctxFor(t)
	routed := newClient(t, nodes.Addrs())
	if _, err := routed.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	info, err := routed.KeyInfo(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	for i, addr := range nodes.Addrs() {
		one := newClient(t, []string{addr}, client.WithRouting(false))
		res, err := one.Get(ctx, "k", client.Local())
		replica := slices.Contains(info.PreferenceList, fmt.Sprintf("node-%d", i))
		switch {
		case replica && (err != nil || string(res.Value()) != "v"):
			t.Errorf("node-%d, a replica: local read = %v, %v; want v", i, res, err)
		case !replica && !errors.Is(err, client.ErrNotFound):
			t.Errorf("node-%d, not a replica: local read err = %v, want ErrNotFound", i, err)
		}
		if res, err := one.Get(ctx, "k"); err != nil || string(res.Value()) != "v" {
			t.Errorf("node-%d: quorum read = %v, %v; want v", i, res, err)
		}
	}
}
