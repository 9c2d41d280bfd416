package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Deadlines of starting and stopping a local cluster. Generous, because the
// machine may be busy with other work; the conditions normally hold within
// a second.
const (
	clusterStartTimeout = 60 * time.Second
	nodeStopTimeout     = 15 * time.Second
	pollInterval        = 50 * time.Millisecond
)

// localNode is one dynamo process this tool started.
type localNode struct {
	id      string
	listen  string // client address, host:port
	peer    string // node-to-node address, host:port; serves /debug/pprof/
	gossip  string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
}

func (n *localNode) url() string { return "http://" + n.listen }

func (n *localNode) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// localCluster is a cluster of dynamo processes on loopback ports, every
// node's data dir and log under one temporary directory. stop ends the
// processes and removes the directory.
type localCluster struct {
	dir   string
	nodes []*localNode
}

// buildDynamo builds ./cmd/dynamo of the module that holds the working
// directory into dir and returns the binary's path.
func buildDynamo(ctx context.Context, dir string) (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building dynamo: the go tool is not on PATH (or pass --binary): %w", err)
	}
	out, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("building dynamo: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("building dynamo: the working directory is not inside the dynamo module; run from it or pass --binary")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "dynamo")); err != nil {
		return "", fmt.Errorf("building dynamo: module %s has no cmd/dynamo; run from the dynamo module or pass --binary", root)
	}
	bin := filepath.Join(dir, "dynamo")
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/dynamo")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dynamo: %v\n%s", err, out)
	}
	return bin, nil
}

// startLocalCluster starts size nodes of bin: node n0 alone, then the others
// with --join=<n0's gossip address>, and returns once every node is ready
// and lists size alive members. On error everything started is stopped and
// removed again. progress, when not nil, receives a line per step.
func startLocalCluster(ctx context.Context, o options, progress io.Writer) (_ *localCluster, err error) {
	dir, err := os.MkdirTemp("", "dynamo-bench-")
	if err != nil {
		return nil, err
	}
	c := &localCluster{dir: dir}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	bin := o.binary
	if bin == "" {
		say(progress, "building ./cmd/dynamo")
		if bin, err = buildDynamo(ctx, dir); err != nil {
			return nil, err
		}
	}
	addrs, err := freeAddrs(3 * o.nodes)
	if err != nil {
		return nil, err
	}
	for i := range o.nodes {
		n := &localNode{
			id:      fmt.Sprintf("n%d", i),
			listen:  addrs[3*i],
			peer:    addrs[3*i+1],
			gossip:  addrs[3*i+2],
			logPath: filepath.Join(dir, fmt.Sprintf("n%d.log", i)),
			done:    make(chan struct{}),
		}
		args := []string{
			"--id=" + n.id,
			"--listen=" + n.listen,
			"--peer-listen=" + n.peer,
			"--gossip-listen=" + n.gossip,
			"--data-dir=" + filepath.Join(dir, n.id),
			fmt.Sprintf("--n=%d", o.n),
			fmt.Sprintf("--r=%d", o.r),
			fmt.Sprintf("--w=%d", o.w),
		}
		if i > 0 {
			args = append(args, "--join="+c.nodes[0].gossip)
		}
		args = append(args, o.nodeArgs...)
		n.cmd = exec.Command(bin, args...)
		c.nodes = append(c.nodes, n)
	}
	say(progress, fmt.Sprintf("starting %d node(s) (n=%d r=%d w=%d) under %s", o.nodes, o.n, o.r, o.w, dir))

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, clusterStartTimeout)
	defer cancel()
	// n0 must be up before the others can join through it.
	if err := c.startNode(c.nodes[0]); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, client, c.nodes[:1]); err != nil {
		return nil, err
	}
	for _, n := range c.nodes[1:] {
		if err := c.startNode(n); err != nil {
			return nil, err
		}
	}
	if err := c.waitReady(ctx, client, c.nodes); err != nil {
		return nil, err
	}
	if err := c.waitMembers(ctx, client); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *localCluster) startNode(n *localNode) error {
	logFile, err := os.Create(n.logPath)
	if err != nil {
		return err
	}
	n.cmd.Stdout = logFile
	n.cmd.Stderr = logFile
	n.cmd.Env = childEnv()
	n.cmd.SysProcAttr = childProcAttr()
	if err := n.cmd.Start(); err != nil {
		logFile.Close()
		close(n.done)
		return fmt.Errorf("node %s: start: %w", n.id, err)
	}
	go func() {
		n.cmd.Wait()
		logFile.Close()
		close(n.done)
	}()
	return nil
}

// waitReady polls /readyz of every node until each answers 200.
func (c *localCluster) waitReady(ctx context.Context, client *http.Client, nodes []*localNode) error {
	for _, n := range nodes {
		err := poll(ctx, func() (bool, error) {
			if n.exited() {
				return false, fmt.Errorf("node %s exited during start-up:\n%s", n.id, tail(n.logPath, 20))
			}
			status, _, err := fetch(ctx, client, n.url()+"/readyz")
			return err == nil && status == http.StatusOK, nil
		})
		if err != nil {
			return fmt.Errorf("node %s not ready: %w", n.id, err)
		}
	}
	return nil
}

// clusterView is the part of GET /cluster this tool reads.
type clusterView struct {
	ID      string `json:"id"`
	N       int    `json:"n"`
	R       int    `json:"r"`
	W       int    `json:"w"`
	Members []struct {
		ID       string `json:"id"`
		Addr     string `json:"addr"`
		PeerAddr string `json:"peer_addr"`
		State    string `json:"state"`
	} `json:"members"`
}

func getCluster(ctx context.Context, client *http.Client, base string) (clusterView, error) {
	var v clusterView
	status, body, err := fetch(ctx, client, base+"/cluster")
	if err != nil {
		return v, err
	}
	if status != http.StatusOK {
		return v, fmt.Errorf("GET %s/cluster: status %d: %s", base, status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("GET %s/cluster: %w", base, err)
	}
	return v, nil
}

// waitMembers polls GET /cluster of every node until each lists every node
// as an alive member.
func (c *localCluster) waitMembers(ctx context.Context, client *http.Client) error {
	want := map[string]bool{}
	for _, n := range c.nodes {
		want[n.id] = true
	}
	for _, n := range c.nodes {
		var last string
		err := poll(ctx, func() (bool, error) {
			if n.exited() {
				return false, fmt.Errorf("node %s exited during start-up:\n%s", n.id, tail(n.logPath, 20))
			}
			v, err := getCluster(ctx, client, n.url())
			if err != nil {
				last = err.Error()
				return false, nil
			}
			alive := 0
			var seen []string
			for _, m := range v.Members {
				seen = append(seen, m.ID+"="+m.State)
				if want[m.ID] && m.State == "alive" {
					alive++
				}
			}
			last = "members: " + strings.Join(seen, ", ")
			return alive == len(c.nodes), nil
		})
		if err != nil {
			return fmt.Errorf("node %s does not see all %d members alive (%s): %w", n.id, len(c.nodes), last, err)
		}
	}
	return nil
}

// urls are the nodes' client base URLs.
func (c *localCluster) urls() []string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, n.url())
	}
	return us
}

// profileTargets are the nodes' peer ports, where their profiles are served.
func (c *localCluster) profileTargets() []profileTarget {
	var ts []profileTarget
	for _, n := range c.nodes {
		ts = append(ts, profileTarget{id: n.id, peer: "http://" + n.peer})
	}
	return ts
}

// pids are the nodes' process ids, by node id.
func (c *localCluster) pids() []nodeProcess {
	var ps []nodeProcess
	for _, n := range c.nodes {
		if n.cmd.Process != nil {
			ps = append(ps, nodeProcess{id: n.id, pid: n.cmd.Process.Pid})
		}
	}
	return ps
}

// stop sends SIGTERM to every node, SIGKILL to those still running after
// nodeStopTimeout, and removes the cluster's directory.
func (c *localCluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.cmd.Process == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n.exited() {
				return
			}
			n.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-n.done:
			case <-time.After(nodeStopTimeout):
				n.cmd.Process.Kill()
				<-n.done
			}
		}()
	}
	wg.Wait()
	os.RemoveAll(c.dir)
}

// childEnv is this process's environment without DYNAMO_* variables, which
// would otherwise configure the nodes behind the tool's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DYNAMO_") {
			env = append(env, kv)
		}
	}
	return env
}

// freeAddrs returns n distinct loopback addresses whose ports are free for
// both TCP and UDP (memberlist needs both on the gossip port). Every port
// is held until all are chosen, so none is picked twice.
func freeAddrs(n int) ([]string, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var addrs []string
	for attempt := 0; len(addrs) < n; attempt++ {
		if attempt > 100*n {
			return nil, fmt.Errorf("found only %d of %d loopback ports free for TCP and UDP", len(addrs), n)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen on a loopback port: %w", err)
		}
		closers = append(closers, ln)
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue // UDP side taken: keep the TCP one held and try another
		}
		closers = append(closers, pc)
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// poll calls cond every pollInterval until it returns true or an error, or
// ctx ends.
func poll(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fetch GETs url and returns the status and the whole body.
func fetch(ctx context.Context, client *http.Client, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// tail returns the last n lines of the file at path, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func say(w io.Writer, line string) {
	if w != nil {
		fmt.Fprintln(w, "dynamo-bench:", line)
	}
}
