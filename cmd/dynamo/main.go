// Command dynamo runs one node of the store; with a first argument of get,
// put, delete or cluster it is a client of one instead (see cli.go), and
// with probe a container health check (see probe.go).
//
// Every flag also reads the environment variable DYNAMO_<FLAG> (upper case,
// '-' as '_'); a flag given on the command line wins. See CONTRACT.md §1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dynamo-kv/dynamo/api"
	"github.com/dynamo-kv/dynamo/node"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		if err := probe(os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "dynamo:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && isCLICommand(os.Args[1]) {
		os.Exit(runCLI(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dynamo:", err)
		os.Exit(1)
	}
}

// options are the command line: the node's configuration plus what only
// the process needs.
type options struct {
	node        node.Config
	logLevel    slog.Level
	logJSON     bool
	slowRequest time.Duration
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	o := options{node: node.DefaultConfig()}
	c := &o.node
	fs := flag.NewFlagSet("dynamo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var join string
	fs.StringVar(&c.ID, "id", c.ID, "unique node name")
	fs.StringVar(&c.Listen, "listen", c.Listen, "client REST address (what a load balancer fronts)")
	fs.StringVar(&c.PeerListen, "peer-listen", c.PeerListen, "node-to-node replication address")
	fs.StringVar(&c.GossipListen, "gossip-listen", c.GossipListen, "membership (memberlist) address, TCP and UDP")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "host other nodes should dial, when it differs from the bind host")
	fs.StringVar(&join, "join", "", "comma list of gossip addresses of any existing members; empty starts a new cluster")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "where this node keeps everything it must not lose")
	fs.IntVar(&c.N, "n", c.N, "replicas per key")
	fs.IntVar(&c.R, "r", c.R, "read quorum")
	fs.IntVar(&c.W, "w", c.W, "write quorum")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "ring partitions, fixed for the cluster's life")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "coordinator's deadline for one client request")
	fs.Int64Var(&c.MaxValueBytes, "max-value-bytes", c.MaxValueBytes, "largest value accepted")
	fs.IntVar(&c.SiblingWarn, "sibling-warn", c.SiblingWarn, "siblings on a key above which reads and writes are answered with a Warning header, counted and logged")
	fs.IntVar(&c.MaxSiblings, "max-siblings", c.MaxSiblings, "most siblings a write may leave on a key; a write that would add one more is refused with 409 too_many_siblings")
	fs.BoolVar(&c.HintedHandoff, "hinted-handoff", c.HintedHandoff, "keep hints for unreachable replicas and deliver them later")
	fs.DurationVar(&c.AntiEntropyInterval, "anti-entropy-interval", c.AntiEntropyInterval, "how often replicas compare Merkle trees; 0 turns it off")
	fs.DurationVar(&c.TombstoneGrace, "tombstone-grace", c.TombstoneGrace, "how long a delete's tombstone is kept once every replica has it")
	fs.IntVar(&c.MaxHints, "max-hints", c.MaxHints, "most hints kept for unreachable replicas; past it the oldest are dropped")
	fs.Int64Var(&c.HandoffBytesPerSecond, "handoff-bytes-per-second", c.HandoffBytesPerSecond, "throttle for partition data pulled after a ring change; 0 is unthrottled")
	fs.StringVar(&c.GossipProfile, "gossip-profile", c.GossipProfile, "memberlist timing: lan, or local for fast failure detection on one machine")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	fs.DurationVar(&o.slowRequest, "slow-request", time.Second, "log client requests that take this long or longer (0: none)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	// Environment variables fill in every flag not given on the command line.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		name := "DYNAMO_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	for _, addr := range strings.Split(join, ",") {
		if addr = strings.TrimSpace(addr); addr != "" {
			c.Join = append(c.Join, addr)
		}
	}
	return o, c.Validate()
}

func run(args []string, stderr io.Writer) error {
	o, err := parseFlags(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	handlerOpts := &slog.HandlerOptions{Level: o.logLevel}
	var logger *slog.Logger
	if o.logJSON {
		logger = slog.New(slog.NewJSONHandler(stderr, handlerOpts))
	} else {
		logger = slog.New(slog.NewTextHandler(stderr, handlerOpts))
	}
	o.node.Logger = logger

	// Bind the client port first so a port clash fails before anything else starts.
	ln, err := net.Listen("tcp", o.node.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	n, err := node.New(o.node)
	if err != nil {
		ln.Close()
		return err
	}
	// Timeouts, header limit and net/http's own error answers are set by
	// api.NewServer, so that the API's bad-input tests run this same server.
	var silent newConns
	srv := api.NewServer(api.New(n, api.Options{
		MaxValueBytes: o.node.MaxValueBytes,
		SiblingWarn:   o.node.SiblingWarn,
		Registry:      n.Registry(),
		Logger:        logger,
		SlowRequest:   o.slowRequest,
	}), api.ServerOptions{Logger: logger, ConnState: silent.track})
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("serving", "listen", o.node.Listen, "peer_listen", o.node.PeerListen, "gossip_listen", o.node.GossipListen)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String())
	case <-n.Left():
		logger.Info("handed off and left the cluster; shutting down")
	case err := <-serveErr:
		n.Close()
		return fmt.Errorf("serve: %w", err)
	}
	// readyz turns 503 first, then in-flight requests finish, then the node
	// flushes and closes its store.
	n.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), o.node.RequestTimeout+5*time.Second)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(ctx) }()
	var shutdownErr error
	for waiting := true; waiting; {
		select {
		case shutdownErr = <-shutdown:
			waiting = false
		case <-time.After(250 * time.Millisecond):
			silent.closeSilent(250 * time.Millisecond)
		}
	}
	if err := n.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if shutdownErr != nil {
		logger.Warn("requests still running at shutdown were cut", "err", shutdownErr)
	}
	logger.Info("stopped")
	return nil
}
