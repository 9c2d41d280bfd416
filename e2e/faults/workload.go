package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// WorkloadConfig shapes the clients of a run.
type WorkloadConfig struct {
	// Seed drives each client's choices (not their timing).
	Seed uint64
	// Clients is how many clients run at once, each one request at a time.
	Clients int
	// SetKeys is how many set-add keys the clients share at a time.
	SetKeys int
	// SetCap is how many elements a set-add key takes before the clients
	// move on to fresh keys, so that values stay small in long runs.
	SetCap int
	// RegisterKeys is how many register keys the clients share.
	RegisterKeys int
	// Weights of the three workloads: set-add, register, delete.
	SetWeight, RegisterWeight, DeleteWeight int
	// StaleContext is how often a register write carries the context of
	// the client's own last write of the key instead of a fresh read's.
	StaleContext float64
	// BlindWrite is how often a register write carries no context at all.
	BlindWrite float64
}

// DefaultWorkloadConfig is a mix for two cores: 8 clients, 4 set-add keys
// at a time, 24 registers.
func DefaultWorkloadConfig(seed uint64) WorkloadConfig {
	return WorkloadConfig{
		Seed: seed, Clients: 8,
		SetKeys: 4, SetCap: 300, RegisterKeys: 24,
		SetWeight: 4, RegisterWeight: 4, DeleteWeight: 2,
		StaleContext: 0.2, BlindWrite: 0.05,
	}
}

// Workload runs clients against a cluster and records what they do in a
// History. Clients keep their state between runs, so that a soak can stop
// them for a check and start them again.
type Workload struct {
	cfg     WorkloadConfig
	c       Cluster
	h       *History
	clients []*client
	// setGeneration numbers the current set-add keys; a client that reads
	// a full set moves everyone on to the next generation.
	setGeneration atomic.Int64
}

// NewWorkload returns the clients of cfg against c, recording into h.
func NewWorkload(cfg WorkloadConfig, c Cluster, h *History) *Workload {
	w := &Workload{cfg: cfg, c: c, h: h}
	for i := range cfg.Clients {
		w.clients = append(w.clients, &client{
			w: w, id: i,
			rng:       rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1)),
			registers: map[string]version.Clock{},
		})
	}
	return w
}

// Run runs every client until ctx is done and they have all stopped.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, cl := range w.clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				cl.step(ctx)
			}
		})
	}
	wg.Wait()
}

// client is one client; only its own goroutine touches it.
type client struct {
	w   *Workload
	id  int
	rng *rand.Rand
	seq int
	// registers holds the context of this client's last acknowledged
	// write of each register.
	registers map[string]version.Clock
	deleted   int
}

func (cl *client) step(ctx context.Context) {
	cfg := cl.w.cfg
	n := cl.rng.IntN(cfg.SetWeight + cfg.RegisterWeight + cfg.DeleteWeight)
	switch {
	case n < cfg.SetWeight:
		cl.setAdd(ctx)
	case n < cfg.SetWeight+cfg.RegisterWeight:
		cl.register(ctx)
	default:
		cl.writeThenDelete(ctx)
	}
}

// pick returns a random node that is up, or "" after a short pause when
// none is (every node killed or starting).
func (cl *client) pick(ctx context.Context) string {
	up := cl.w.c.Up()
	if len(up) > 0 {
		return up[cl.rng.IntN(len(up))]
	}
	// Pacing, not waiting for an event: try again a little later.
	timer := time.NewTimer(20 * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	return ""
}

func (cl *client) get(ctx context.Context, key string) (Read, bool) {
	via := cl.pick(ctx)
	if via == "" {
		return Read{}, false
	}
	r, err := cl.w.c.Get(ctx, via, key)
	cl.w.h.Read(ctx, key, r, err)
	return r, err == nil
}

func (cl *client) put(ctx context.Context, workload, key, value string, sent version.Clock, hasContext bool, element string) (version.Clock, bool) {
	via := cl.pick(ctx)
	if via == "" {
		return nil, false
	}
	if !hasContext {
		sent = nil
	}
	got, err := cl.w.c.Put(ctx, via, key, []byte(value), sent, hasContext)
	cl.w.h.Put(ctx, workload, cl.id, key, value, sent, got, err, element)
	return got, err == nil
}

// setAdd adds a new element to a shared set: it reads the key, unions the
// siblings, adds the element and writes with the read's context.
func (cl *client) setAdd(ctx context.Context) {
	gen := cl.w.setGeneration.Load()
	key := fmt.Sprintf("set-%d-%d", gen, cl.rng.IntN(cl.w.cfg.SetKeys))
	r, ok := cl.get(ctx, key)
	if !ok {
		return
	}
	elements := SetElements(r.Siblings)
	if len(elements) >= cl.w.cfg.SetCap {
		cl.w.setGeneration.CompareAndSwap(gen, gen+1)
	}
	cl.seq++
	element := fmt.Sprintf("c%d.%d", cl.id, cl.seq)
	cl.w.h.Element(key, element)
	elements = append(elements, element)
	slices.Sort(elements)
	value := strings.Join(elements, ",")
	cl.put(ctx, WorkloadSet, key, value, r.Context, true, element)
}

// register writes a new value to a shared register, usually with a fresh
// read's context, sometimes with its own last write's (stale if others
// wrote since), sometimes blind.
func (cl *client) register(ctx context.Context) {
	cfg := cl.w.cfg
	key := fmt.Sprintf("reg-%d", cl.rng.IntN(cfg.RegisterKeys))
	var (
		sent       version.Clock
		hasContext = true
	)
	last, known := cl.registers[key]
	switch p := cl.rng.Float64(); {
	case p < cfg.BlindWrite:
		hasContext = false
	case p < cfg.BlindWrite+cfg.StaleContext && known:
		sent = last
	default:
		r, ok := cl.get(ctx, key)
		if !ok {
			return
		}
		sent = r.Context
	}
	cl.seq++
	value := fmt.Sprintf("%s=c%d.%d", key, cl.id, cl.seq)
	if got, ok := cl.put(ctx, WorkloadRegister, key, value, sent, hasContext, ""); ok {
		cl.registers[key] = got
	}
}

// writeThenDelete writes a fresh key of its own one to three times, reads
// it and deletes what it saw and wrote. The key is never written again.
func (cl *client) writeThenDelete(ctx context.Context) {
	cl.deleted++
	key := fmt.Sprintf("del-c%d-%d", cl.id, cl.deleted)
	var (
		clock version.Clock
		has   bool
	)
	for i := range 1 + cl.rng.IntN(3) {
		if ctx.Err() != nil {
			return
		}
		if got, ok := cl.put(ctx, WorkloadDelete, key, fmt.Sprintf("%s#%d", key, i), clock, has, ""); ok {
			clock, has = got, true
		}
	}
	if r, ok := cl.get(ctx, key); ok {
		clock = clock.Merge(r.Context)
	}
	if len(clock) == 0 || ctx.Err() != nil {
		return // nothing known to delete
	}
	via := cl.pick(ctx)
	if via == "" {
		return
	}
	covered, err := cl.w.c.Delete(ctx, via, key, clock)
	if err == nil && !covered.Equal(clock) {
		err = fmt.Errorf("delete answered context %s, sent %s", covered, clock)
	}
	cl.w.h.Delete(ctx, cl.id, key, clock, err)
}

// SetElements is the union of a set-add key's siblings, sorted. A value
// is its elements joined by commas.
func SetElements(siblings []Sibling) []string {
	var out []string
	for _, s := range siblings {
		for e := range strings.SplitSeq(string(s.Value), ",") {
			if e != "" {
				out = append(out, e)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
