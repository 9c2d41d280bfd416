package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Names of what is measured. A read is one GET. An update is one PUT with
// --blind, else a GET of the key and a PUT carrying that GET's X-Context
// (read-modify-write), measured as a whole and as its two requests.
const (
	statRead      = "read"
	statUpdate    = "update"
	statUpdateGet = "update.get"
	statUpdatePut = "update.put"
)

// Suffixes of the names in forwarding mode: the request went to the key's
// coordinator, or to a node that is not one of its replicas.
const (
	routeDirect    = " direct"
	routeForwarded = " forwarded"
)

// route is where a key's requests go in forwarding mode.
type route struct {
	coordinator string // base URL of the first node of the preference list
	nonReplica  string // base URL of a node outside the preference list
}

// runner drives the load: the clients, where each request goes and what
// is recorded.
type runner struct {
	o       options
	client  *kvClient
	targets []string
	next    atomic.Uint64 // round-robin position over targets
	keys    keyChooser
	routes  []route // by key index, in forwarding mode only
}

func newRunner(o options, targets []string, client *kvClient) *runner {
	rn := &runner{o: o, client: client, targets: targets}
	if o.dist == "uniform" {
		rn.keys = uniformKeys{n: o.keys}
	} else {
		rn.keys = newZipfianKeys(o.keys, o.seed)
	}
	return rn
}

// target is the next node in round-robin order, as a load balancer in front
// of the cluster would pick it.
func (rn *runner) target() string {
	return rn.targets[(rn.next.Add(1)-1)%uint64(len(rn.targets))]
}

func (rn *runner) key(i int) string {
	return keyName(rn.o.keyPrefix, i)
}

// clientStats is what one client measured. Only its own goroutine touches
// it until the run ends.
type clientStats struct {
	hists    map[string]*Histogram
	errors   map[string]int64
	details  map[string]string // first error message of each transport error kind
	ops      int64             // operations that succeeded
	failed   int64             // operations with at least one failed request
	requests int64             // HTTP requests sent
	siblings int64             // GETs answered 300: the key held concurrent versions
}

func newClientStats() *clientStats {
	return &clientStats{hists: map[string]*Histogram{}, errors: map[string]int64{}, details: map[string]string{}}
}

func (s *clientStats) record(name string, d time.Duration) {
	h := s.hists[name]
	if h == nil {
		h = &Histogram{}
		s.hists[name] = h
	}
	h.Record(d)
}

func (s *clientStats) fail(r result) {
	s.errors[r.kind]++
	if r.detail != "" && s.details[r.kind] == "" {
		s.details[r.kind] = r.detail
	}
}

func (s *clientStats) countSiblings(rec bool, r result) {
	if rec && r.status == http.StatusMultipleChoices {
		s.siblings++
	}
}

func (s *clientStats) merge(o *clientStats) {
	for name, h := range o.hists {
		if s.hists[name] == nil {
			s.hists[name] = &Histogram{}
		}
		s.hists[name].Merge(h)
	}
	for k, n := range o.errors {
		s.errors[k] += n
	}
	for k, d := range o.details {
		if s.details[k] == "" {
			s.details[k] = d
		}
	}
	s.ops += o.ops
	s.failed += o.failed
	s.requests += o.requests
	s.siblings += o.siblings
}

// preload writes every key once, with --clients writers, each retrying a
// failed key twice. With rmw, each write reads the key first and carries
// its context, so a rerun against a cluster that holds the keys replaces
// them rather than adding siblings.
func (rn *runner) preload(ctx context.Context, rmw bool) error {
	workers := min(rn.o.clients, rn.o.keys)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed = map[string]int{}
		lost   int
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			value := randomValue(rn.o.valueSize, rn.o.seed, uint64(w))
			for i := w; i < rn.o.keys && ctx.Err() == nil; i += workers {
				key := rn.key(i)
				var last result
				for range 3 {
					if last = rn.write(ctx, key, value, rmw); last.ok() {
						break
					}
				}
				if !last.ok() {
					mu.Lock()
					failed[last.kind]++
					lost++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if lost > 0 {
		return fmt.Errorf("preload: %d of %d keys could not be written after 3 tries: %v", lost, rn.o.keys, failed)
	}
	return nil
}

func (rn *runner) write(ctx context.Context, key string, value []byte, rmw bool) result {
	var xctx string
	if rmw {
		r := rn.client.get(ctx, rn.target(), key, true)
		if !r.ok() {
			return r
		}
		xctx = r.context
	}
	return rn.client.put(ctx, rn.target(), key, value, xctx)
}

// findRoutes asks the cluster for every key's preference list and picks,
// for each key, its coordinator and a node that does not replicate it.
func (rn *runner) findRoutes(ctx context.Context) error {
	meta := &http.Client{Transport: rn.client.http.Transport, Timeout: rn.o.timeout}
	view, err := getCluster(ctx, meta, rn.targets[0])
	if err != nil {
		return err
	}
	urlOf := map[string]string{}
	var alive []string
	for _, m := range view.Members {
		if m.State == "alive" {
			urlOf[m.ID] = "http://" + m.Addr
			alive = append(alive, m.ID)
		}
	}
	rn.routes = make([]route, rn.o.keys)
	workers := min(rn.o.clients, rn.o.keys, 16)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < rn.o.keys && errs[w] == nil; i += workers {
				errs[w] = rn.findRoute(ctx, meta, i, alive, urlOf)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (rn *runner) findRoute(ctx context.Context, meta *http.Client, i int, alive []string, urlOf map[string]string) error {
	key := rn.key(i)
	var info struct {
		PreferenceList []string `json:"preference_list"`
	}
	status, body, err := fetch(ctx, meta, rn.targets[0]+"/cluster/keys/"+url.PathEscape(key))
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET /cluster/keys/%s: status %d", key, status)
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("GET /cluster/keys/%s: %w", key, err)
	}
	if len(info.PreferenceList) == 0 || urlOf[info.PreferenceList[0]] == "" {
		return fmt.Errorf("key %s: coordinator %v is not an alive member", key, info.PreferenceList)
	}
	var outside []string
	for _, id := range alive {
		if !slices.Contains(info.PreferenceList, id) {
			outside = append(outside, id)
		}
	}
	if len(outside) == 0 {
		return fmt.Errorf("key %s: every alive member replicates it (preference list %v); forwarding needs more nodes than N", key, info.PreferenceList)
	}
	rn.routes[i] = route{coordinator: urlOf[info.PreferenceList[0]], nonReplica: urlOf[outside[i%len(outside)]]}
	return nil
}

// window is when operations are issued and when they are counted.
type window struct {
	measureStart time.Time // operations started before it are warm-up
	end          time.Time // no operation starts at or after it
}

// runClient is one closed-loop client: it issues its next operation as soon
// as the last one is answered, until w.end or ctx ends.
func (rn *runner) runClient(ctx context.Context, id int, w window, st *clientStats) {
	rng := rand.New(rand.NewPCG(rn.o.seed, uint64(id)+1))
	value := randomValue(rn.o.valueSize, rn.o.seed, uint64(id)+1<<32)
	names := newStatNames(rn.o.forwarding)
	for {
		start := time.Now()
		if !start.Before(w.end) || ctx.Err() != nil {
			return
		}
		rec := !start.Before(w.measureStart)
		k := rn.keys.next(rng)
		op := rn.o.workload.next(rng)
		key := rn.key(k)
		via := -1 // round robin
		if rn.o.forwarding {
			via = rng.IntN(2)
		}
		switch op {
		case opRead:
			r := rn.client.get(ctx, rn.base(k, via), key, !rn.o.preload)
			st.countSiblings(rec, r)
			rn.finish(ctx, st, rec, 1, start, names.of(statRead, via), r)
		case opUpdate:
			if rn.o.blind {
				r := rn.client.put(ctx, rn.base(k, via), key, value, "")
				rn.finish(ctx, st, rec, 1, start, names.of(statUpdate, via), r)
				continue
			}
			g := rn.client.get(ctx, rn.base(k, via), key, !rn.o.preload)
			st.countSiblings(rec, g)
			if !g.ok() {
				rn.finish(ctx, st, rec, 1, start, names.of(statUpdate, via), g)
				continue
			}
			putStart := time.Now()
			p := rn.client.put(ctx, rn.base(k, via), key, value, g.context)
			if rec && p.ok() {
				st.record(names.of(statUpdateGet, via), putStart.Sub(start))
				st.record(names.of(statUpdatePut, via), time.Since(putStart))
			}
			rn.finish(ctx, st, rec, 2, start, names.of(statUpdate, via), p)
		}
	}
}

// finish counts one operation of requests HTTP requests, whose last result
// is r, when it falls in the measured window. An error caused by this
// tool's own cancellation (Ctrl-C) is not the cluster's and is not counted.
func (rn *runner) finish(ctx context.Context, st *clientStats, rec bool, requests int64, start time.Time, name string, r result) {
	if !rec || (ctx.Err() != nil && !r.ok()) {
		return
	}
	st.requests += requests
	if !r.ok() {
		st.failed++
		st.fail(r)
		return
	}
	st.ops++
	st.record(name, time.Since(start))
}

// base is the node a request for key index k goes to: the next in round
// robin (via < 0), the key's coordinator (0) or a node that is not one of
// its replicas (1).
func (rn *runner) base(k, via int) string {
	switch via {
	case 0:
		return rn.routes[k].coordinator
	case 1:
		return rn.routes[k].nonReplica
	}
	return rn.target()
}

// statNames holds the names of what is measured, built once per client so
// the hot loop does not concatenate strings.
type statNames struct {
	forwarding bool
	byRoute    map[string][2]string
}

func newStatNames(forwarding bool) statNames {
	s := statNames{forwarding: forwarding, byRoute: map[string][2]string{}}
	for _, n := range []string{statRead, statUpdate, statUpdateGet, statUpdatePut} {
		s.byRoute[n] = [2]string{n + routeDirect, n + routeForwarded}
	}
	return s
}

func (s statNames) of(name string, via int) string {
	if via < 0 {
		return name
	}
	return s.byRoute[name][via]
}

// randomValue is a value of size bytes, different for each stream.
func randomValue(size int, seed, stream uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, stream))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// measurement is what a run measured, before it is turned into a report.
type measurement struct {
	stats        *clientStats
	elapsed      time.Duration
	generatorCPU cpuTimes
	nodes        []nodeUsage
	machineBusy  time.Duration // every process's CPU, this tool's and the nodes' included
	machineErr   error
}

// nodeProcess is a node whose CPU is reported.
type nodeProcess struct {
	id  string
	pid int
}

// nodeUsage is a node's CPU use over the measured window, and its memory at
// the end.
type nodeUsage struct {
	nodeProcess
	cpu cpuTimes
	rss int64
	err error
}

// run starts o.clients clients, lets them warm up, measures for o.duration
// and returns what was measured. procs are the nodes whose CPU is sampled at
// the window's edges; profiles, when not nil, starts collecting the nodes'
// profiles as the window opens (the caller waits for them).
func (rn *runner) run(ctx context.Context, procs []nodeProcess, profiles *profileCollector) (measurement, error) {
	start := time.Now()
	w := window{measureStart: start.Add(rn.o.warmup), end: start.Add(rn.o.warmup + rn.o.duration)}
	stats := make([]*clientStats, rn.o.clients)
	var wg sync.WaitGroup
	for i := range stats {
		stats[i] = newClientStats()
		wg.Add(1)
		go func() {
			defer wg.Done()
			rn.runClient(ctx, i, w, stats[i])
		}()
	}
	// Sample CPU counters as the measured window opens.
	timer := time.NewTimer(time.Until(w.measureStart))
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
		wg.Wait()
		return measurement{}, ctx.Err()
	}
	selfBefore := selfCPU()
	nodesBefore := sampleNodes(procs)
	machineBefore, errBefore := readMachineStat()
	if profiles != nil {
		profiles.start(ctx, rn.o.duration)
	}
	wg.Wait()
	elapsed := time.Since(w.measureStart)
	selfAfter := selfCPU()
	nodesAfter := sampleNodes(procs)
	machineAfter, errAfter := readMachineStat()
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}

	m := measurement{
		stats:        newClientStats(),
		elapsed:      elapsed,
		generatorCPU: selfAfter.sub(selfBefore),
		machineBusy:  machineAfter.busy - machineBefore.busy,
		machineErr:   errors.Join(errBefore, errAfter),
	}
	for _, s := range stats {
		m.stats.merge(s)
	}
	for i, p := range procs {
		u := nodeUsage{nodeProcess: p, err: errors.Join(nodesBefore[i].err, nodesAfter[i].err)}
		if u.err == nil {
			u.cpu = nodesAfter[i].sample.cpu.sub(nodesBefore[i].sample.cpu)
			u.rss = nodesAfter[i].sample.rss
		}
		m.nodes = append(m.nodes, u)
	}
	return m, nil
}

type nodeSample struct {
	sample procSample
	err    error
}

func sampleNodes(procs []nodeProcess) []nodeSample {
	out := make([]nodeSample, len(procs))
	for i, p := range procs {
		out[i].sample, out[i].err = readProcStat(p.pid)
	}
	return out
}
