package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// options are the command line, parsed and checked.
type options struct {
	// Where the load goes: nodes this tool starts, or running ones.
	nodes    int      // size of the local cluster to start; 0 with targets
	targets  []string // base URLs of running nodes
	binary   string   // the dynamo binary; empty builds ./cmd/dynamo
	n, r, w  int      // passed to started nodes
	nodeArgs []string // extra flags for every started node
	pids     []int    // processes of running targets whose CPU to report

	// What the load is.
	workload  workload
	valueSize int
	keys      int
	keyPrefix string
	dist      string // "zipfian" or "uniform"
	clients   int
	duration  time.Duration
	warmup    time.Duration
	timeout   time.Duration
	blind     bool // updates without the context of a read first
	preload   bool
	seed      uint64

	// What is measured and shown.
	forwarding   bool
	json         bool
	cpuProfile   string
	nodeProfiles string // directory for the nodes' profiles
}

// listFlag is a flag given several times or as a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeatFlag is a flag that may be given several times; commas are kept.
type repeatFlag []string

func (l *repeatFlag) String() string { return strings.Join(*l, " ") }

func (l *repeatFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("dynamo-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dynamo-bench [flags]\n\n"+
			"Starts a local cluster of the dynamo binary (--nodes) or targets running\n"+
			"nodes (--targets), preloads --keys keys, runs a YCSB-style workload and\n"+
			"reports throughput, errors, latency percentiles and CPU use.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		targets, pids listFlag
		nodeArgs      repeatFlag
		workloadName  string
	)
	fs.IntVar(&o.nodes, "nodes", 1, "start a local cluster of this many nodes (loopback ports, temp data dirs, removed on exit)")
	fs.Var(&targets, "targets", "comma list of base URLs of running nodes (http://host:port); excludes --nodes")
	fs.StringVar(&o.binary, "binary", "", "dynamo binary to start; empty builds ./cmd/dynamo of the module in the working directory")
	fs.IntVar(&o.n, "n", 0, "replicas per key for started nodes (default 1 with one node, else 3 capped at --nodes)")
	fs.IntVar(&o.r, "r", 0, "read quorum for started nodes (default 1 with one node, else 2 capped at --n)")
	fs.IntVar(&o.w, "w", 0, "write quorum for started nodes (default 1 with one node, else 2 capped at --n)")
	fs.Var(&nodeArgs, "node-arg", "extra flag for every started node, e.g. --node-arg=--anti-entropy-interval=0 (repeatable)")
	fs.Var(&pids, "pids", "with --targets: comma list of the nodes' process ids, to report their CPU use")
	fs.StringVar(&workloadName, "workload", "A", "A (50% reads, 50% updates), B (95/5), C (reads only) or W (updates only)")
	fs.IntVar(&o.valueSize, "value-size", 1024, "bytes per value written")
	fs.IntVar(&o.keys, "keys", 10000, "number of distinct keys; all are written before measuring")
	fs.StringVar(&o.keyPrefix, "key-prefix", "bench-", "prefix of every key")
	fs.StringVar(&o.dist, "distribution", "zipfian", "key popularity: zipfian (YCSB's scrambled zipfian, theta 0.99) or uniform")
	fs.IntVar(&o.clients, "clients", 64, "concurrent clients, each with one request in flight")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to measure")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "load run before measuring starts, not counted")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "client deadline for one HTTP request")
	fs.BoolVar(&o.blind, "blind", false, "update with a plain PUT without context (siblings grow on hot keys); default reads the key first and writes with its X-Context")
	fs.BoolVar(&o.preload, "preload", true, "write every key before measuring; --preload=false reuses keys a previous run left")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the key and operation choices")
	fs.BoolVar(&o.forwarding, "forwarding", false, "measure forwarding: send each request to the key's coordinator or to a node that does not replicate it, and compare")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.StringVar(&o.nodeProfiles, "node-profiles", "", "write each node's CPU profile over the measured window, and a goroutine dump from its middle, into this directory (from /debug/pprof/ on the peer port)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	o.nodeArgs = nodeArgs
	w, err := workloadByName(workloadName)
	if err != nil {
		errs = append(errs, err)
	}
	o.workload = w

	if len(targets) > 0 {
		if set["nodes"] {
			fail("--nodes and --targets exclude each other: start a cluster or point at a running one")
		}
		o.nodes = 0
		for _, t := range targets {
			u, err := url.Parse(t)
			if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
				fail("--targets: %q is not a node's base URL like http://127.0.0.1:8080", t)
				continue
			}
			o.targets = append(o.targets, "http://"+u.Host)
		}
		for _, name := range []string{"n", "r", "w", "binary", "node-arg"} {
			if set[name] {
				fail("--%s configures nodes this tool starts; with --targets the running cluster's settings apply", name)
			}
		}
		for _, p := range pids {
			pid, err := strconv.Atoi(p)
			if err != nil || pid <= 0 {
				fail("--pids: %q is not a process id", p)
				continue
			}
			o.pids = append(o.pids, pid)
		}
	} else {
		if len(pids) > 0 {
			fail("--pids is for --targets; the CPU of started nodes is always reported")
		}
		if o.nodes < 1 || o.nodes > 64 {
			fail("--nodes must be between 1 and 64, got %d", o.nodes)
		} else {
			o.n, o.r, o.w = quorumDefaults(o.nodes, o.n, o.r, o.w)
			switch {
			case o.nodes == 1 && (o.n != 1 || o.r != 1 || o.w != 1):
				fail("--nodes=1 holds one replica of each key: --n, --r and --w must be 1 (the default for one node), got n=%d r=%d w=%d", o.n, o.r, o.w)
			case o.n < 1 || o.n > o.nodes:
				fail("--n must be between 1 and --nodes (%d), got %d", o.nodes, o.n)
			default:
				if o.r < 1 || o.r > o.n {
					fail("--r must be between 1 and --n (%d), got %d", o.n, o.r)
				}
				if o.w < 1 || o.w > o.n {
					fail("--w must be between 1 and --n (%d), got %d", o.n, o.w)
				}
			}
		}
		if o.forwarding && o.nodes <= o.n {
			fail("--forwarding needs a node that does not replicate the key: --nodes (%d) must exceed --n (%d), e.g. --nodes=4 --n=3", o.nodes, o.n)
		}
	}
	if o.forwarding && len(o.targets) == 1 {
		fail("--forwarding needs at least two nodes: --targets lists one")
	}
	if o.clients < 1 {
		fail("--clients must be at least 1, got %d", o.clients)
	}
	if o.keys < 1 {
		fail("--keys must be at least 1, got %d", o.keys)
	}
	if o.valueSize < 0 {
		fail("--value-size must not be negative, got %d", o.valueSize)
	}
	if o.dist != "zipfian" && o.dist != "uniform" {
		fail("--distribution must be zipfian or uniform, got %q", o.dist)
	}
	if o.duration <= 0 {
		fail("--duration must be positive, got %s", o.duration)
	}
	if o.warmup < 0 {
		fail("--warmup must not be negative, got %s", o.warmup)
	}
	if o.timeout <= 0 {
		fail("--timeout must be positive, got %s", o.timeout)
	}
	return o, errors.Join(errs...)
}

// quorumDefaults fills in N, R and W not given (zero): all 1 for a single
// node, else the contract's 3/2/2 capped at what the cluster can hold.
func quorumDefaults(nodes, n, r, w int) (int, int, int) {
	if n == 0 {
		n = min(3, nodes)
	}
	if r == 0 {
		r = min(2, max(n, 1))
	}
	if w == 0 {
		w = min(2, max(n, 1))
	}
	return n, r, w
}
