package faults_test

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/e2e/faults"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// scenario is one cluster configuration the suite runs under faults.
type scenario struct {
	name string
	// hints and antiEntropy configure the nodes (node.Config's
	// HintedHandoff and AntiEntropyInterval).
	hints       bool
	antiEntropy time.Duration
	// tombstoneGrace, when not zero, replaces node.Config's: short, it
	// makes tombstones purged while stale copies may still be around.
	tombstoneGrace time.Duration
	// majority lets faults affect a majority of the nodes at once; the
	// unavailability that follows is counted, not a failure.
	majority bool
	// period is how long faults are injected in the short mode.
	period time.Duration
}

// scenarios share the short mode's time budget (about 60-90s in all).
// Where the grace of tombstones is one second, time is compressed: a
// purge happens within the run, as it would after an hour in production.
var scenarios = []scenario{
	// As in production: hints, and anti-entropy behind them.
	{name: "minority-both", hints: true, antiEntropy: 5 * time.Second, period: 15 * time.Second},
	// Hints (and read repair) alone must make replicas converge.
	{name: "minority-hints", hints: true, period: 15 * time.Second},
	// Anti-entropy alone, on a short interval, purging tombstones.
	{name: "minority-antientropy", hints: false, antiEntropy: 250 * time.Millisecond, tombstoneGrace: time.Second, period: 15 * time.Second},
	// Both, purging tombstones while hints may still be held: with a 6s
	// grace, hints live 3s, and one is delivered only if it is younger
	// than that by its delivery's deadline (2s away); so some are
	// delivered and some dropped as stale.
	{name: "minority-purge", hints: true, antiEntropy: 250 * time.Millisecond, tombstoneGrace: 6 * time.Second, period: 15 * time.Second},
	// Both, with faults past what quorums survive.
	{name: "majority-both", hints: true, antiEntropy: 5 * time.Second, majority: true, period: 12 * time.Second},
}

const (
	clusterSize = 5
	// convergenceBound is how long replicas get to converge once faults
	// end: hint back-offs (at most 2s) and anti-entropy rounds, on two
	// loaded cores, maybe under the race detector.
	convergenceBound = 60 * time.Second
	// faultLogLines is how many fault events a soak keeps to print when
	// it fails.
	faultLogLines = 300
)

// containerScenarios run in the container mode: one scenario with
// everything on, tombstones purged within the run, as the short mode of
// every CI run (about two minutes with the cluster's start).
var containerScenarios = []scenario{
	{name: "containers", hints: true, antiEntropy: time.Second, tombstoneGrace: 6 * time.Second, period: 40 * time.Second},
}

// TestFaults is the in-process short mode, for every CI run: each scenario
// injects faults for its period while clients run, then heals, waits for
// the replicas to converge and checks them against what clients were told.
//
// The seed comes from the test's name, or from DYNAMO_FAULT_SEED; the
// period from DYNAMO_FAULT_PERIOD (a duration) when set.
func TestFaults(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			run(t, sc, inProcessCluster(t, sc), []time.Duration{periodOf(t, sc)}, false)
		})
	}
}

// TestFaultsContainers is the container mode's short run: five containers
// of the real binary, killed with SIGKILL, paused with the cgroup freezer
// and partitioned with iptables (docker_test.go). It needs a Docker engine
// and root; it skips without them unless DYNAMO_REQUIRE_DOCKER=1, as in CI.
func TestFaultsContainers(t *testing.T) {
	for _, sc := range containerScenarios {
		t.Run(sc.name, func(t *testing.T) {
			run(t, sc, containerCluster(t, sc), []time.Duration{periodOf(t, sc)}, false)
		})
	}
}

// periodOf is how long sc injects faults in the short mode:
// DYNAMO_FAULT_PERIOD when set.
func periodOf(t *testing.T, sc scenario) time.Duration {
	s := os.Getenv("DYNAMO_FAULT_PERIOD")
	if s == "" {
		return sc.period
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("DYNAMO_FAULT_PERIOD: %v", err)
	}
	return d
}

// TestFaultSoak is the soak mode, by hand only:
//
//	DYNAMO_SOAK=20m go test -count=1 -v -timeout 0 -run TestFaultSoak ./e2e/faults/
//
// It runs one cluster in rounds of DYNAMO_SOAK_ROUND (default 2m) of
// faults, each ended by a heal, a convergence wait and a check of the
// whole history so far. DYNAMO_SOAK_MODE is inprocess (the default) or
// containers, and DYNAMO_SOAK_SCENARIO one of that mode's scenarios
// (default minority-both, or containers).
func TestFaultSoak(t *testing.T) {
	total := os.Getenv("DYNAMO_SOAK")
	if total == "" {
		t.Skip("set DYNAMO_SOAK (a duration, e.g. 20m) to soak")
	}
	soak, err := time.ParseDuration(total)
	if err != nil {
		t.Fatalf("DYNAMO_SOAK: %v", err)
	}
	round := 2 * time.Minute
	if s := os.Getenv("DYNAMO_SOAK_ROUND"); s != "" {
		if round, err = time.ParseDuration(s); err != nil {
			t.Fatalf("DYNAMO_SOAK_ROUND: %v", err)
		}
	}
	list, start, fallback := scenarios, inProcessCluster, "minority-both"
	switch mode := cmp.Or(os.Getenv("DYNAMO_SOAK_MODE"), "inprocess"); mode {
	case "inprocess":
	case "containers":
		list, start, fallback = containerScenarios, containerCluster, "containers"
	default:
		t.Fatalf("DYNAMO_SOAK_MODE %q: want inprocess or containers", mode)
	}
	name := cmp.Or(os.Getenv("DYNAMO_SOAK_SCENARIO"), fallback)
	var sc *scenario
	for i := range list {
		if list[i].name == name {
			sc = &list[i]
		}
	}
	if sc == nil {
		t.Fatalf("DYNAMO_SOAK_SCENARIO %q: not one of %v", name, scenarioNames(list))
	}
	var rounds []time.Duration
	for left := soak; left > 0; left -= round {
		rounds = append(rounds, min(round, left))
	}
	run(t, *sc, start(t, *sc), rounds, true)
}

// inProcessCluster starts sc's cluster in this process, over simnet.
func inProcessCluster(t *testing.T, sc scenario) faults.Cluster {
	cfg := nodetest.DefaultConfig()
	cfg.RequestTimeout = 2 * time.Second // the contract's default
	cfg.HintedHandoff = sc.hints
	cfg.AntiEntropyInterval = sc.antiEntropy
	if sc.tombstoneGrace > 0 {
		cfg.TombstoneGrace = sc.tombstoneGrace
	}
	if os.Getenv("DEBUGLOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return &inProcess{c: nodetest.MakeCluster(t, clusterSize, cfg)}
}

// containerCluster starts sc's cluster as containers of the real binary,
// configured with the flags an operator would use.
func containerCluster(t *testing.T, sc scenario) faults.Cluster {
	image := requireDocker(t)
	flags := []string{
		"--partitions=64", "--request-timeout=2s", "--gossip-profile=local",
		fmt.Sprintf("--hinted-handoff=%t", sc.hints),
		fmt.Sprintf("--anti-entropy-interval=%s", sc.antiEntropy),
	}
	if sc.tombstoneGrace > 0 {
		flags = append(flags, fmt.Sprintf("--tombstone-grace=%s", sc.tombstoneGrace))
	}
	return startDockerCluster(t, image, clusterSize, flags)
}

// run drives one cluster through rounds of faults, each followed by a
// heal, convergence and a check of the history so far.
func run(t *testing.T, sc scenario, cluster faults.Cluster, rounds []time.Duration, soak bool) {
	seed := seedFor(t)
	env := ""
	if soak {
		env = fmt.Sprintf("DYNAMO_SOAK=%s DYNAMO_SOAK_ROUND=%s DYNAMO_SOAK_MODE=%s DYNAMO_SOAK_SCENARIO=%s ",
			os.Getenv("DYNAMO_SOAK"), cmp.Or(os.Getenv("DYNAMO_SOAK_ROUND"), "2m"),
			cmp.Or(os.Getenv("DYNAMO_SOAK_MODE"), "inprocess"), sc.name)
	}
	t.Logf("seed %d; reproduce with: %sDYNAMO_FAULT_SEED=%d go test -count=1 -v -timeout 0 -run '^%s$' ./e2e/faults/",
		seed, env, seed, t.Name())
	nodes := cluster.Nodes()

	history := faults.NewHistory()
	workload := faults.NewWorkload(faults.DefaultWorkloadConfig(seed), cluster, history)
	events := &eventLog{t: t, echo: !soak}
	runner := faults.NewRunner(cluster, events.logf)
	maxAffected := (len(nodes) - 1) / 2
	if sc.majority {
		maxAffected = len(nodes)/2 + 1
	}

	var slowest time.Duration
	for i, period := range rounds {
		plan := faults.Plan(faults.ScheduleConfig{
			Seed:        seed + uint64(i),
			Period:      period,
			Kinds:       faults.AllKinds,
			MinGap:      20 * time.Millisecond,
			MaxGap:      300 * time.Millisecond,
			MinDuration: 100 * time.Millisecond,
			MaxDuration: 3 * time.Second,
			MaxAffected: maxAffected,
		}, nodes)
		t.Logf("round %d: %d faults over %s, at most %d of %d nodes at once", i+1, len(plan), period, maxAffected, len(nodes))

		ctx, stop := context.WithCancel(t.Context())
		var clients sync.WaitGroup
		clients.Go(func() { workload.Run(ctx) })
		// Should a fault fail the test, the clients still stop before the
		// cluster is shut down.
		t.Cleanup(func() { stop(); clients.Wait() })
		err := runner.Run(ctx, plan)
		stop()
		clients.Wait()
		if err != nil {
			events.dump()
			t.Fatalf("round %d: %v", i+1, err)
		}
		if err := runner.Recover(); err != nil {
			t.Fatalf("round %d: recovering: %v", i+1, err)
		}

		copies, took, err := faults.WaitConverged(cluster, history.Keys(), convergenceBound)
		if err != nil {
			events.dump()
			t.Fatalf("round %d: %v", i+1, err)
		}
		slowest = max(slowest, took)
		report := faults.Check(history, copies)
		summary := faults.Summary{Seed: seed, Report: report, Convergence: took, Faults: runner.Injected}
		t.Logf("round %d of %d, %s:\n%s", i+1, len(rounds), sc.name, summary)
		if !report.OK() {
			events.dump()
			for _, p := range report.Problems {
				t.Error(p)
			}
			for _, e := range history.Errors() {
				t.Errorf("unexpected error: %s", e)
			}
			t.Fatalf("round %d: %d lost, %d resurrected, %d phantoms, %d unexpected errors (seed %d)",
				i+1, report.Lost(), report.Resurrected, report.Phantoms, report.Errors, seed)
		}
		if report.AckedPuts < 50 {
			t.Fatalf("round %d: only %d writes acknowledged so far; the workload did not run", i+1, report.AckedPuts)
		}
	}
	if soak {
		t.Logf("soak of %s: slowest convergence %.2fs, %d faults", sc.name, slowest.Seconds(), runner.Total())
	}
}

// seedFor returns DYNAMO_FAULT_SEED, or a hash of the test's name: stable
// from run to run, different between scenarios.
func seedFor(t *testing.T) uint64 {
	if s := os.Getenv("DYNAMO_FAULT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DYNAMO_FAULT_SEED: %v", err)
		}
		return seed
	}
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return h.Sum64() % 1_000_000
}

// eventLog logs fault events as they happen in the short mode, and keeps
// the last ones of a soak to log when it fails.
type eventLog struct {
	t    *testing.T
	echo bool
	last []string
}

func (l *eventLog) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if l.echo {
		l.t.Log(line)
		return
	}
	if len(l.last) == faultLogLines {
		l.last = l.last[1:]
	}
	l.last = append(l.last, line)
}

func (l *eventLog) dump() {
	if len(l.last) > 0 {
		l.t.Logf("the last %d fault events:\n%s", len(l.last), strings.Join(l.last, "\n"))
	}
}

func scenarioNames(list []scenario) []string {
	var names []string
	for _, sc := range list {
		names = append(names, sc.name)
	}
	return names
}
