package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case interrupted:
		fmt.Fprintln(os.Stderr, "dynamo-bench: interrupted; nodes stopped and temporary files removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "dynamo-bench:", err)
		os.Exit(1)
	}
}

// run is the whole command: set up the cluster or reach the targets, write
// the keys, run the workload, report. Whatever it started is stopped and
// removed before it returns, also when ctx is cancelled (Ctrl-C).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	rep := report{
		Cores:           runtime.NumCPU(),
		Workload:        o.workload.name,
		ReadFraction:    o.workload.readFrac,
		ReadModifyWrite: !o.blind,
		Distribution:    o.dist,
		Keys:            o.keys,
		ValueBytes:      o.valueSize,
		Clients:         o.clients,
		WarmupSeconds:   o.warmup.Seconds(),
	}
	targets := o.targets
	var (
		procs     []nodeProcess
		profiling []profileTarget
	)
	if o.nodes > 0 {
		c, err := startLocalCluster(ctx, o, stderr)
		if err != nil {
			return err
		}
		defer c.stop()
		targets = c.urls()
		procs = c.pids()
		profiling = c.profileTargets()
		rep.Cluster.Started = true
	} else {
		for i, pid := range o.pids {
			procs = append(procs, nodeProcess{id: fmt.Sprintf("pid%d", i), pid: pid})
		}
	}
	rep.Cluster.Nodes = len(targets)
	rep.Cluster.Targets = targets

	client := newKVClient(o.clients, o.timeout)
	defer client.close()
	view, err := getCluster(ctx, client.http, targets[0])
	if err != nil {
		return fmt.Errorf("reading the cluster's settings: %w", err)
	}
	rep.Cluster.N, rep.Cluster.R, rep.Cluster.W = view.N, view.R, view.W
	var profiles *profileCollector
	if o.nodeProfiles != "" {
		if profiling == nil {
			for _, m := range view.Members {
				if m.State == "alive" && m.PeerAddr != "" {
					profiling = append(profiling, profileTarget{id: m.ID, peer: "http://" + m.PeerAddr})
				}
			}
		}
		if profiles, err = newProfileCollector(o.nodeProfiles, profiling, o.duration); err != nil {
			return err
		}
	}

	rn := newRunner(o, targets, client)
	if o.forwarding {
		say(stderr, fmt.Sprintf("asking for the preference lists of %d keys", o.keys))
		if err := rn.findRoutes(ctx); err != nil {
			return err
		}
	}
	if o.preload {
		// Keys in a cluster this tool just started do not exist yet; in a
		// running one they may, and a blind write would add a sibling.
		rmw := !rep.Cluster.Started && !o.blind
		say(stderr, fmt.Sprintf("writing %d keys of %d bytes", o.keys, o.valueSize))
		start := time.Now()
		if err := rn.preload(ctx, rmw); err != nil {
			return err
		}
		rep.PreloadSeconds = time.Since(start).Seconds()
	}
	say(stderr, fmt.Sprintf("workload %s with %d clients: %s warm-up, then %s measured", o.workload.name, o.clients, o.warmup, o.duration))
	m, err := rn.run(ctx, procs, profiles)
	if profiles != nil {
		if perr := profiles.wait(); perr != nil {
			say(stderr, fmt.Sprintf("node profiles incomplete: %v", perr))
		} else if err == nil {
			say(stderr, fmt.Sprintf("node profiles in %s: go tool pprof -top %s/<id>.cpu.pprof", o.nodeProfiles, o.nodeProfiles))
		}
	}
	if err != nil {
		return err
	}
	rep.Date = time.Now().Format(time.RFC3339)
	rep.fillMeasurement(m)
	rep.Heap = readHeaps(ctx, client.http, targets)
	if o.json {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}
