package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/ring"
)

// Bounds of ring fetches, independent of any request's context since a
// fetch outlives the request that started it.
const (
	// ringFetchTimeout bounds one fetch from one node.
	ringFetchTimeout = 5 * time.Second
	// refreshAfterFailure is the least time between two fetches prompted by
	// failures, so that a flapping node does not turn every request into
	// two more.
	refreshAfterFailure = time.Second
	// maxRingBody bounds a ring or cluster answer: 65536 partitions of a few
	// ids each fit with room to spare.
	maxRingBody = 64 << 20
)

// routes is one fetched ring: immutable once built, swapped whole.
type routes struct {
	version string
	fetched time.Time
	// placer is a ring of the fetched partition count without members: only
	// its PartitionOf is used, the function every node places keys with.
	placer *ring.Ring
	// lists holds each partition's preference list, coordinator first.
	lists [][]string
	// addrs maps member ids to base URLs; states holds their states.
	addrs  map[string]string
	states map[string]string
	// others lists the base URLs of members up (alive or suspect), in
	// the order /cluster gave them, for requests whose replicas all failed.
	others []string
}

// ringAnswer is GET /cluster/ring.
type ringAnswer struct {
	Version         string     `json:"version"`
	Partitions      int        `json:"partitions"`
	N               int        `json:"n"`
	PreferenceLists [][]string `json:"preference_lists"`
}

// router keeps the ring a client routes by and the nodes that recently
// failed. Its methods are safe for concurrent use.
type router struct {
	seeds []string
	hc    *http.Client
	cfg   config

	current atomic.Pointer[routes] // nil until a fetch succeeded

	mu sync.Mutex // guards the fields below
	// fetching is closed when the fetch under way ends; nil when none is.
	fetching chan struct{}
	// lastFetch is when the last fetch started.
	lastFetch time.Time
	// failed maps a base URL to when it last failed to answer; it is tried
	// last until a ring refresh interval has passed.
	failed map[string]time.Time
}

func newRouter(seeds []string, hc *http.Client, cfg config) *router {
	return &router{seeds: seeds, hc: hc, cfg: cfg, failed: map[string]time.Time{}}
}

// targets returns the base URLs to try for key, best first: its replicas in
// preference-list order, then the other members up, then the seeds; nodes
// that failed recently come last. It fetches the ring first when there is
// none (waiting for that fetch while ctx allows) and refreshes it in the
// background when it is old.
func (r *router) targets(ctx context.Context, key string) []string {
	rt := r.current.Load()
	if rt == nil {
		rt = r.awaitFirst(ctx)
	} else if r.cfg.now().Sub(rt.fetched) >= r.cfg.ringRefresh {
		r.refresh(r.cfg.ringRefresh)
	}
	var out []string
	if rt != nil {
		p := rt.placer.PartitionOf([]byte(key))
		for _, id := range rt.lists[p] {
			if addr, ok := rt.addrs[id]; ok && up(rt.states[id]) {
				out = append(out, addr)
			}
		}
		for _, id := range rt.lists[p] {
			if addr, ok := rt.addrs[id]; ok && !up(rt.states[id]) {
				out = append(out, addr)
			}
		}
		out = appendNew(out, rt.others...)
	}
	out = appendNew(out, r.seeds...)
	return r.failedLast(out)
}

// up reports whether a member in state s may answer.
func up(s string) bool { return s == "alive" || s == "suspect" }

// appendNew appends the addresses of add not already in dst.
func appendNew(dst []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

// failedLast moves the nodes that failed within the refresh interval to the
// end, keeping the order otherwise.
func (r *router) failedLast(addrs []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failed) == 0 {
		return addrs
	}
	now := r.cfg.now()
	var good, bad []string
	for _, a := range addrs {
		if at, ok := r.failed[a]; ok {
			if now.Sub(at) < r.cfg.ringRefresh {
				bad = append(bad, a)
				continue
			}
			delete(r.failed, a)
		}
		good = append(good, a)
	}
	return append(good, bad...)
}

// nodeFailed records that addr gave no answer, or said it is not ready,
// and prompts a ring refresh: membership may have changed.
func (r *router) nodeFailed(addr string) {
	r.mu.Lock()
	r.failed[addr] = r.cfg.now()
	r.mu.Unlock()
	r.refresh(refreshAfterFailure)
}

// awaitFirst fetches the first ring, or joins the fetch under way, and waits
// for it while ctx allows. It returns nil when there is still no ring: the
// request then goes to the seeds.
func (r *router) awaitFirst(ctx context.Context) *routes {
	// When no node answered a moment ago, requests do not each wait for
	// another try: refresh returns at once and they go to the seeds.
	done := r.refresh(refreshAfterFailure)
	select {
	case <-done:
	case <-ctx.Done():
	}
	return r.current.Load()
}

// refresh starts a ring fetch unless one is under way or the last one
// started less than minGap ago, and returns a channel closed when the fetch
// under way (if any) ends. The gap keeps a ring that cannot be fetched, or a
// node that keeps failing, from turning every request into two more.
func (r *router) refresh(minGap time.Duration) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fetching != nil {
		return r.fetching
	}
	now := r.cfg.now()
	if !r.lastFetch.IsZero() && now.Sub(r.lastFetch) < minGap {
		done := make(chan struct{})
		close(done)
		return done
	}
	done := make(chan struct{})
	r.fetching = done
	r.lastFetch = now
	go func() {
		rt, err := r.fetch()
		r.mu.Lock()
		if err == nil {
			r.current.Store(rt)
		}
		r.fetching = nil
		r.mu.Unlock()
		close(done)
	}()
	return done
}

// fetch asks the known nodes, in turn from a random one, for the ring and
// the members, and returns what the first to answer both said.
func (r *router) fetch() (*routes, error) {
	addrs := slices.Clone(r.seeds)
	if rt := r.current.Load(); rt != nil {
		addrs = appendNew(slices.Clone(rt.others), addrs...)
	}
	start := rand.IntN(len(addrs))
	var errs []error
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		rt, err := r.fetchFrom(addr)
		if err == nil {
			return rt, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// fetchFrom builds the routes from one node's GET /cluster/ring and
// GET /cluster.
func (r *router) fetchFrom(addr string) (*routes, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ringFetchTimeout)
	defer cancel()
	var ra ringAnswer
	if err := getJSON(ctx, r.hc, addr+"/cluster/ring", &ra); err != nil {
		return nil, err
	}
	var ca ClusterInfo
	if err := getJSON(ctx, r.hc, addr+"/cluster", &ca); err != nil {
		return nil, err
	}
	if ra.Version == "" || ra.Partitions < 1 || len(ra.PreferenceLists) != ra.Partitions {
		return nil, fmt.Errorf("client: %s has no usable ring yet (version %q, %d partitions, %d lists)",
			addr, ra.Version, ra.Partitions, len(ra.PreferenceLists))
	}
	placer, err := ring.New(ra.Partitions, nil, 1)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", addr, err)
	}
	rt := &routes{
		version: ra.Version,
		fetched: r.cfg.now(),
		placer:  placer,
		lists:   ra.PreferenceLists,
		addrs:   map[string]string{},
		states:  map[string]string{},
	}
	scheme := schemeOf(addr)
	for _, m := range ca.Members {
		if m.Addr == "" {
			continue
		}
		base := scheme + "://" + m.Addr
		rt.addrs[m.ID] = base
		rt.states[m.ID] = m.State
		if up(m.State) {
			rt.others = append(rt.others, base)
		}
	}
	return rt, nil
}

// getJSON GETs url and decodes its 200 answer into v.
func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRingBody))
	if err != nil {
		return fmt.Errorf("client: reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return errorFrom(baseOf(url), resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("client: decoding %s: %w", url, err)
	}
	return nil
}
