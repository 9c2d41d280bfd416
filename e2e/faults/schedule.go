package faults

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults a schedule draws from.
const (
	// KindKill kills nodes and restarts them on their data when it ends.
	KindKill Kind = "kill"
	// KindPause hangs nodes (SIGSTOP, docker pause) until it ends.
	KindPause Kind = "pause"
	// KindPartition splits the network between random groups.
	KindPartition Kind = "partition"
	// KindIsolate cuts one node off from all the others.
	KindIsolate Kind = "isolate"
)

// AllKinds lists every kind of fault.
var AllKinds = []Kind{KindKill, KindPause, KindPartition, KindIsolate}

// Fault is one fault of a schedule.
type Fault struct {
	// At is when it starts, from the start of the schedule.
	At time.Duration
	// For is how long it lasts.
	For  time.Duration
	Kind Kind
	// Nodes are the nodes it affects: killed, paused, or cut off from the
	// largest group.
	Nodes []string
	// Groups is the partition (KindPartition, KindIsolate): nodes in no
	// group form one more group.
	Groups [][]string
}

func (f Fault) String() string {
	what := strings.Join(f.Nodes, ",")
	if len(f.Groups) > 0 {
		parts := make([]string, len(f.Groups))
		for i, g := range f.Groups {
			parts[i] = "{" + strings.Join(g, ",") + "}"
		}
		what = strings.Join(parts, " | ") + " | rest"
	}
	return fmt.Sprintf("%s %s for %s", f.Kind, what, f.For.Round(time.Millisecond))
}

// ScheduleConfig bounds a fault schedule.
type ScheduleConfig struct {
	// Seed drives every choice: the same seed and nodes give the same plan.
	Seed uint64
	// Period is how long faults are injected; none starts after it, and
	// each ends by it.
	Period time.Duration
	// Kinds are the faults to draw from.
	Kinds []Kind
	// MinGap and MaxGap bound the time between one attempt to start a
	// fault and the next (no fault starts when the budget is spent).
	MinGap, MaxGap time.Duration
	// MinDuration and MaxDuration bound how long one fault lasts; the
	// duration is drawn log-uniformly, so that short faults (shorter than
	// a request's timeout) and long ones are both common.
	MinDuration, MaxDuration time.Duration
	// MaxAffected is how many nodes may be affected at once: a minority
	// ((n-1)/2) keeps quorums possible; more makes unavailability expected.
	MaxAffected int
}

// Plan draws a fault schedule. Faults never affect the same node at once,
// at most cfg.MaxAffected nodes are affected at any time, and at most one
// network fault (partition or isolation) is active at a time, since each
// replaces the network's partition.
func Plan(cfg ScheduleConfig, nodes []string) []Fault {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	var (
		plan   []Fault
		active []Fault
		at     time.Duration
	)
	for {
		at += between(cfg.MinGap, cfg.MaxGap)
		if at >= cfg.Period {
			return plan
		}
		active = slices.DeleteFunc(active, func(f Fault) bool { return f.At+f.For <= at })
		var busy []string
		network := false
		for _, f := range active {
			busy = append(busy, f.Nodes...)
			network = network || f.Kind == KindPartition || f.Kind == KindIsolate
		}
		budget := cfg.MaxAffected - len(busy)
		kinds := slices.DeleteFunc(slices.Clone(cfg.Kinds), func(k Kind) bool {
			return network && (k == KindPartition || k == KindIsolate)
		})
		if budget <= 0 || len(kinds) == 0 {
			continue
		}
		free := slices.DeleteFunc(slices.Clone(nodes), func(id string) bool { return slices.Contains(busy, id) })
		rng.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		budget = min(budget, len(free))
		if budget == 0 {
			continue
		}
		// Mostly one node; sometimes as many as the budget allows.
		count := 1
		if rng.IntN(3) == 0 {
			count = 1 + rng.IntN(budget)
		}
		f := Fault{At: at, Kind: kinds[rng.IntN(len(kinds))], Nodes: slices.Clone(free[:count])}
		switch f.Kind {
		case KindIsolate:
			f.Nodes = f.Nodes[:1]
			f.Groups = [][]string{slices.Clone(f.Nodes)}
		case KindPartition:
			// The affected nodes form one group, or two; the others
			// (the largest group) one more.
			cut := len(f.Nodes)
			if cut > 1 && rng.IntN(2) == 0 {
				cut = 1 + rng.IntN(cut-1)
			}
			f.Groups = [][]string{slices.Sorted(slices.Values(f.Nodes[:cut]))}
			if cut < len(f.Nodes) {
				f.Groups = append(f.Groups, slices.Sorted(slices.Values(f.Nodes[cut:])))
			}
		}
		slices.Sort(f.Nodes)
		f.For = min(logUniform(rng, cfg.MinDuration, cfg.MaxDuration), cfg.Period-at)
		plan = append(plan, f)
		active = append(active, f)
	}
}

// logUniform draws a duration between lo and hi whose logarithm is uniform.
func logUniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if lo <= 0 || hi <= lo {
		return max(lo, hi)
	}
	ratio := float64(hi) / float64(lo)
	return time.Duration(float64(lo) * math.Pow(ratio, rng.Float64()))
}

// Runner applies a fault plan to a cluster and undoes it. Its methods are
// called from one goroutine (a test's: the in-process cluster may fail the
// test from them).
type Runner struct {
	inj  Injector
	logf func(format string, args ...any)

	killed      map[string]bool
	paused      map[string]bool
	partitioned bool
	// Injected counts the faults started, by kind.
	Injected map[Kind]int
}

// NewRunner returns a Runner for inj that logs each fault with logf.
func NewRunner(inj Injector, logf func(format string, args ...any)) *Runner {
	return &Runner{inj: inj, logf: logf, killed: map[string]bool{}, paused: map[string]bool{}, Injected: map[Kind]int{}}
}

// Run applies plan on its timetable, from now, until its last fault ended
// or ctx is done. A fault applied late (a kill waits for the node's
// requests in flight) delays those after it, never reorders them.
func (r *Runner) Run(ctx context.Context, plan []Fault) error {
	type event struct {
		at    time.Duration
		start bool
		f     Fault
	}
	var events []event
	for _, f := range plan {
		events = append(events, event{f.At, true, f}, event{f.At + f.For, false, f})
	}
	// Ends before starts at the same instant: budgets assume it.
	slices.SortStableFunc(events, func(a, b event) int {
		switch {
		case a.at != b.at:
			return cmp.Compare(a.at, b.at)
		case a.start == b.start:
			return 0
		case b.start:
			return -1
		}
		return 1
	})
	begin := time.Now()
	for _, ev := range events {
		if wait := ev.at - time.Since(begin); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return nil
			}
		}
		var err error
		if ev.start {
			r.logf("t=%6.2fs start %s", time.Since(begin).Seconds(), ev.f)
			err = r.start(ev.f)
		} else {
			r.logf("t=%6.2fs end   %s", time.Since(begin).Seconds(), ev.f)
			err = r.end(ev.f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) start(f Fault) error {
	r.Injected[f.Kind]++
	switch f.Kind {
	case KindKill:
		for _, id := range f.Nodes {
			if err := r.inj.Kill(id); err != nil {
				return fmt.Errorf("kill %s: %w", id, err)
			}
			r.killed[id] = true
		}
	case KindPause:
		for _, id := range f.Nodes {
			if err := r.inj.Pause(id); err != nil {
				return fmt.Errorf("pause %s: %w", id, err)
			}
			r.paused[id] = true
		}
	case KindPartition, KindIsolate:
		if err := r.inj.Partition(f.Groups...); err != nil {
			return fmt.Errorf("partition: %w", err)
		}
		r.partitioned = true
	default:
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	return nil
}

func (r *Runner) end(f Fault) error {
	switch f.Kind {
	case KindKill:
		for _, id := range f.Nodes {
			if err := r.inj.Restart(id); err != nil {
				return fmt.Errorf("restart %s: %w", id, err)
			}
			delete(r.killed, id)
		}
	case KindPause:
		for _, id := range f.Nodes {
			if err := r.inj.Resume(id); err != nil {
				return fmt.Errorf("resume %s: %w", id, err)
			}
			delete(r.paused, id)
		}
	case KindPartition, KindIsolate:
		if err := r.inj.Reconnect(); err != nil {
			return fmt.Errorf("reconnect: %w", err)
		}
		r.partitioned = false
	}
	return nil
}

// Recover undoes every fault still active: the network reconnected,
// paused nodes resumed, killed nodes restarted.
func (r *Runner) Recover() error {
	var errs []error
	if r.partitioned {
		errs = append(errs, r.inj.Reconnect())
		r.partitioned = false
	}
	for _, id := range sortedKeys(r.paused) {
		errs = append(errs, r.inj.Resume(id))
		delete(r.paused, id)
	}
	for _, id := range sortedKeys(r.killed) {
		errs = append(errs, r.inj.Restart(id))
		delete(r.killed, id)
	}
	return errors.Join(errs...)
}

// Total is the number of faults started.
func (r *Runner) Total() int {
	n := 0
	for _, c := range r.Injected {
		n += c
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
