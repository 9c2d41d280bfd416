package simnet

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
)

// ErrResponseLost reports that a call's handler ran but its answer was
// dropped on the way back: the outcome is unknown to the caller, as the
// peer transport reports a connection broken mid-request.
var ErrResponseLost = fmt.Errorf("simnet: response lost: %w", replication.ErrOutcomeUnknown)

// Call kinds, the keys of Network.Calls.
const (
	KindFetch      = "fetch"
	KindStore      = "store"
	KindCoordinate = "coordinate"
	KindRange      = "range"
	KindExchange   = "exchange"
)

// Network connects the nodes of one test. Its zero value is not usable; call
// New. All methods are safe for concurrent use.
type Network struct {
	// mu guards every field below. It is never held while a handler runs or
	// while a call waits out a delay or a pause.
	mu       sync.Mutex
	rng      *rand.Rand
	handlers map[string]replication.Handler
	// group maps an id to its partition group; ids not in the map share
	// group 0. nil means fully connected.
	group map[string]int
	// paused holds a channel per paused id, closed by Resume or Heal.
	paused   map[string]chan struct{}
	dropRate float64
	// loseAnswers holds the call kinds whose every answer is lost.
	loseAnswers map[string]bool
	minDelay    time.Duration
	maxDelay    time.Duration
	calls       map[string]int
}

// New returns a fully connected network without faults. seed drives every
// random drop and delay, so a sequence of calls made one after another
// meets the same faults on every run with the same seed.
func New(seed uint64) *Network {
	return &Network{
		rng:      rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		handlers: make(map[string]replication.Handler),
		paused:   make(map[string]chan struct{}),
		calls:    make(map[string]int),
	}
}

// Register attaches node id, replacing any handler it had (a restart).
func (n *Network) Register(id string, h replication.Handler) {
	if h == nil {
		panic("simnet: Register with a nil handler")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handlers[id] = h
}

// Unregister takes node id down: calls to it fail with ErrUnreachable until
// it is registered again.
func (n *Network) Unregister(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.handlers, id)
}

// Transport returns what node from uses to call the others.
func (n *Network) Transport(from string) replication.Transport {
	return &transport{net: n, from: from}
}

// Partition splits the network: only ids in the same group can talk. Ids
// not named in any group form one more group together. It replaces any
// earlier partition; an id named twice belongs to its last group.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
	for i, g := range groups {
		for _, id := range g {
			n.group[id] = i + 1
		}
	}
}

// Isolate cuts id off from everyone else.
func (n *Network) Isolate(id string) { n.Partition([]string{id}) }

// Heal removes partitions, drops, delays and pauses.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = nil
	n.dropRate = 0
	n.minDelay, n.maxDelay = 0, 0
	for id, ch := range n.paused {
		close(ch)
		delete(n.paused, id)
	}
}

// Pause hangs id: calls to or from it block until their context is done,
// or until Resume lets them proceed.
func (n *Network) Pause(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.paused[id]; !ok {
		n.paused[id] = make(chan struct{})
	}
}

// Resume releases the calls a Pause of id holds.
func (n *Network) Resume(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ch, ok := n.paused[id]; ok {
		close(ch)
		delete(n.paused, id)
	}
}

// SetDropRate makes each request, and independently each response, be lost
// with probability p (clamped to [0, 1]).
func (n *Network) SetDropRate(p float64) {
	switch {
	case math.IsNaN(p) || p < 0:
		p = 0
	case p > 1:
		p = 1
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dropRate = p
}

// LoseAnswers makes every call of kind run its handler and lose its answer
// (ErrResponseLost), as when a node dies or is cut off mid-request; false
// ends it.
func (n *Network) LoseAnswers(kind string, lose bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.loseAnswers == nil {
		n.loseAnswers = map[string]bool{}
	}
	n.loseAnswers[kind] = lose
}

// SetDelay delays each request by a duration drawn uniformly from
// [min, max]. Negative bounds count as zero; reversed bounds are swapped.
func (n *Network) SetDelay(min, max time.Duration) {
	min, max = maxDuration(min, 0), maxDuration(max, 0)
	if max < min {
		min, max = max, min
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.minDelay, n.maxDelay = min, max
}

// Calls returns how many calls of each kind ("fetch", "store",
// "coordinate") were attempted, whatever their outcome.
func (n *Network) Calls() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.calls)
}

// fault is what the network decided to do to one call.
type fault struct {
	delay        time.Duration
	dropRequest  bool
	dropResponse bool
}

// admit counts a call, checks that it can leave at all and draws its faults.
func (n *Network) admit(from, to, kind string) (fault, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls[kind]++
	if err := n.reachableLocked(from, to); err != nil {
		return fault{}, err
	}
	var f fault
	if n.dropRate > 0 {
		f.dropRequest = n.rng.Float64() < n.dropRate
		f.dropResponse = n.rng.Float64() < n.dropRate
	}
	f.dropResponse = f.dropResponse || n.loseAnswers[kind]
	if n.maxDelay > 0 {
		f.delay = n.minDelay
		if span := n.maxDelay - n.minDelay; span > 0 {
			f.delay += time.Duration(n.rng.Int64N(int64(span) + 1))
		}
	}
	if f.dropRequest {
		return fault{}, fmt.Errorf("%w: simnet: request %s -> %s dropped", replication.ErrUnreachable, from, to)
	}
	return f, nil
}

// deliver returns the handler a request reaches now, after its delay: the
// target may have gone down or been cut off meanwhile.
func (n *Network) deliver(from, to string) (replication.Handler, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.reachableLocked(from, to); err != nil {
		return nil, err
	}
	return n.handlers[to], nil
}

func (n *Network) reachableLocked(from, to string) error {
	if _, ok := n.handlers[to]; !ok {
		return fmt.Errorf("%w: simnet: %s is not registered", replication.ErrUnreachable, to)
	}
	if n.group != nil && n.group[from] != n.group[to] {
		return fmt.Errorf("%w: simnet: %s and %s are partitioned", replication.ErrUnreachable, from, to)
	}
	return nil
}

// waitResumed blocks while from or to is paused.
func (n *Network) waitResumed(ctx context.Context, from, to string) error {
	for {
		n.mu.Lock()
		ch, ok := n.paused[from]
		if !ok {
			ch, ok = n.paused[to]
		}
		n.mu.Unlock()
		if !ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// call carries one request from one node to another and its answer back.
func call[Req, Resp any](
	ctx context.Context, n *Network, from, to, kind string, req Req,
	copyReq func(Req) (Req, error), copyResp func(Resp) (Resp, error),
	handle func(replication.Handler, context.Context, string, Req) (Resp, error),
) (Resp, error) {
	var zero Resp
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	req, err := copyReq(req)
	if err != nil {
		return zero, fmt.Errorf("simnet: %s request does not encode: %w", kind, err)
	}
	f, err := n.admit(from, to, kind)
	if err != nil {
		return zero, err
	}
	if err := n.waitResumed(ctx, from, to); err != nil {
		return zero, err
	}
	if err := sleep(ctx, f.delay); err != nil {
		return zero, err
	}
	h, err := n.deliver(from, to)
	if err != nil {
		return zero, err
	}

	type result struct {
		resp Resp
		err  error
	}
	done := make(chan result, 1)
	hctx, cancel := detach(ctx)
	defer cancel()
	go func() {
		resp, err := handle(h, hctx, from, req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp, err = copyResp(resp)
		if err != nil {
			err = fmt.Errorf("simnet: %s response does not encode: %w", kind, err)
		}
		done <- result{resp, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return zero, ctx.Err()
	}

	// A hung process cannot answer either.
	if err := n.waitResumed(ctx, from, to); err != nil {
		return zero, err
	}
	if f.dropResponse {
		return zero, fmt.Errorf("%w: %s -> %s %s", ErrResponseLost, from, to, kind)
	}
	if r.err != nil {
		return zero, r.err
	}
	return r.resp, nil
}

// detach returns a context with ctx's deadline and cancellation but none of
// its values: a remote handler shares nothing else with its caller.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	var (
		hctx   context.Context
		cancel context.CancelFunc
	)
	if dl, ok := ctx.Deadline(); ok {
		hctx, cancel = context.WithDeadline(context.Background(), dl)
	} else {
		hctx, cancel = context.WithCancel(context.Background())
	}
	stop := context.AfterFunc(ctx, cancel)
	return hctx, func() { stop(); cancel() }
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
