package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// maxValueBytes is the --max-value-bytes every node runs with: small, so
// that the boundary cases of the value size are cheap to send.
const maxValueBytes = 1024

// Deadlines of the harness. They are generous because CI runs the test
// process under the race detector on two cores; the conditions they guard
// normally hold in well under a second.
const (
	startTimeout    = 30 * time.Second // a node ready, a cluster converged
	shutdownTimeout = 10 * time.Second // SIGTERM to exit
	clientTimeout   = 10 * time.Second // one HTTP request
	pollInterval    = 25 * time.Millisecond
)

// showLogs makes every test log its nodes' output, not only a failed one.
var showLogs = flag.Bool("e2e.logs", false, "log every node's output at the end of each test, even when it passed")

// The binary is built once per test process, into a directory TestMain
// removes.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binary returns the path of a freshly built dynamo binary, building it on
// first use with `go build ./cmd/dynamo` from the module root.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.path, build.err = buildBinary()
	})
	if build.err != nil {
		t.Fatalf("building the dynamo binary: %v", build.err)
	}
	return build.path
}

func buildBinary() (string, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is not on PATH: %w", err)
	}
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	dir, err := os.MkdirTemp("", "dynamo-e2e-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "dynamo")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/dynamo")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/dynamo: %v\n%s", err, out)
	}
	return bin, nil
}

// node is one dynamo process of a cluster, possibly restarted.
type node struct {
	id      string
	listen  string // client REST address
	peer    string // --peer-listen
	gossip  string // --gossip-listen
	dataDir string
	logPath string   // stdout and stderr of every run, appended
	args    []string // the same on every start, as the contract asks
	proc    *process // the current or last run; nil before the first start
}

// process is one run of a node.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and err is set
	err  error         // what cmd.Wait returned
	// stopped is set between a SIGSTOP the test sent and the SIGCONT
	// that resumes the process; only the test's goroutine touches it.
	stopped bool
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cluster is a set of dynamo processes on loopback ports and one HTTP client
// to talk to them.
type cluster struct {
	t      *testing.T
	bin    string
	dir    string // every node's data dir and log live under it
	nodes  []*node
	client *http.Client
}

// define adds node n<len(nodes)> to c without starting it: addrs are its
// client, peer and gossip addresses (from freeAddrs), its data dir and log
// live under c.dir, and its flags are the harness's, then extra. Every node
// but n0 joins through n0's gossip address. It returns the new node's index.
func (c *cluster) define(t *testing.T, addrs []string, extra ...string) int {
	t.Helper()
	i := len(c.nodes)
	n := &node{
		id:      fmt.Sprintf("n%d", i),
		listen:  addrs[0],
		peer:    addrs[1],
		gossip:  addrs[2],
		dataDir: filepath.Join(c.dir, fmt.Sprintf("n%d", i), "data"),
		logPath: filepath.Join(c.dir, fmt.Sprintf("n%d", i), "stderr.log"),
	}
	if err := os.MkdirAll(filepath.Dir(n.dataDir), 0o755); err != nil {
		t.Fatal(err)
	}
	n.args = []string{
		"--id=" + n.id,
		"--listen=" + n.listen,
		"--peer-listen=" + n.peer,
		"--gossip-listen=" + n.gossip,
		"--data-dir=" + n.dataDir,
		"--gossip-profile=local",
		"--request-timeout=2s",
		fmt.Sprintf("--max-value-bytes=%d", maxValueBytes),
	}
	if i > 0 {
		n.args = append(n.args, "--join="+c.nodes[0].gossip)
	}
	n.args = append(n.args, extra...)
	c.nodes = append(c.nodes, n)
	return i
}

// startCluster starts size nodes: node 0 alone, then every other node with
// --join=<node 0's gossip address>. It returns once every node is ready and
// sees size alive members. Every process is killed when t ends.
func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	return startClusterWith(t, size)
}

// startClusterWith is startCluster with extra flags for every node, after
// the harness's own (a flag given twice takes its last value).
func startClusterWith(t *testing.T, size int, extra ...string) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Tests write with a few concurrent clients per node: keep their
	// connections alive rather than churn through ephemeral ports.
	tr.MaxIdleConnsPerHost = 32
	c := &cluster{
		t:      t,
		bin:    binary(t),
		client: &http.Client{Timeout: clientTimeout, Transport: tr},
		dir:    t.TempDir(), // before the Cleanup below, so removed after the kills
	}
	// All ports are chosen at once: none is bound before the nodes start.
	addrs := freeAddrs(t, 3*size)
	for i := range size {
		c.define(t, addrs[3*i:3*i+3], extra...)
	}
	t.Cleanup(c.stopAll)

	// Node 0 must be up before the others can join through it.
	c.start(t, 0)
	c.waitReady(t, 0)
	for i := 1; i < size; i++ {
		c.start(t, i)
	}
	for i := range c.nodes {
		c.waitReady(t, i)
	}
	c.waitMembers(t, size)
	return c
}

// freeAddrs returns n distinct loopback addresses whose ports are free for
// both TCP and UDP (memberlist needs both on the gossip port; the others
// need only TCP, but one rule for all is simpler). Every port is held until
// all are chosen, so none is picked twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var addrs []string
	for attempt := 0; len(addrs) < n; attempt++ {
		if attempt > 100*n {
			t.Fatalf("found only %d of %d loopback ports free for TCP and UDP", len(addrs), n)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen on a loopback port: %v", err)
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
	return addrs
}

// start runs node i with its flags, its output appended to its log file.
func (c *cluster) start(t *testing.T, i int) {
	t.Helper()
	n := c.nodes[i]
	if n.proc != nil && !n.proc.exited() {
		t.Fatalf("node %s: start while running", n.id)
	}
	logFile, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logFile, "=== e2e: start %s %s\n", c.bin, strings.Join(n.args, " "))
	cmd := exec.Command(c.bin, n.args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("node %s: start: %v", n.id, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	n.proc = p
}

// childEnv is this process's environment without DYNAMO_* variables, which
// would otherwise configure the nodes behind the test's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DYNAMO_") {
			env = append(env, kv)
		}
	}
	return env
}

// signal sends sig to node i's process.
func (c *cluster) signal(t *testing.T, i int, sig os.Signal) {
	t.Helper()
	n := c.nodes[i]
	if err := n.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("node %s: signal %v: %v", n.id, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.proc.stopped = true
	case syscall.SIGCONT:
		n.proc.stopped = false
	}
}

// waitExit waits up to timeout for node i to exit and returns how long the
// wait took and what Wait returned.
func (c *cluster) waitExit(t *testing.T, i int, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	select {
	case <-c.nodes[i].proc.done:
		// Connections kept alive to the dead process are useless now.
		c.client.CloseIdleConnections()
		return time.Since(start), c.nodes[i].proc.err
	case <-time.After(timeout):
		t.Fatalf("node %s did not exit within %v", c.nodes[i].id, timeout)
		return 0, nil
	}
}

// kill9 SIGKILLs node i and waits for it to be gone.
func (c *cluster) kill9(t *testing.T, i int) {
	t.Helper()
	c.signal(t, i, syscall.SIGKILL)
	c.waitExit(t, i, shutdownTimeout)
}

// stopAll kills every running node, and on failure logs what each printed.
func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		if n.proc == nil {
			continue
		}
		if !n.proc.exited() {
			if n.proc.stopped {
				// Resume a process the test left stopped, so that nothing
				// of it lingers once it is killed.
				n.proc.cmd.Process.Signal(syscall.SIGCONT)
			}
			n.proc.cmd.Process.Kill()
		}
		<-n.proc.done
	}
	c.client.CloseIdleConnections()
	if !c.t.Failed() && !*showLogs {
		return
	}
	const tail = 64 << 10
	for _, n := range c.nodes {
		out, err := os.ReadFile(n.logPath)
		if err != nil {
			c.t.Logf("node %s: no log: %v", n.id, err)
			continue
		}
		if len(out) > tail {
			out = append([]byte("...\n"), out[len(out)-tail:]...)
		}
		c.t.Logf("node %s (%s), exit %v, stderr:\n%s", n.id, n.listen, n.proc.err, out)
	}
}

// waitFor polls cond until it returns nil, failing t with cond's last error
// if that does not happen within timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// waitReady waits for node i's /readyz to answer 200, failing at once if
// the process exits.
func (c *cluster) waitReady(t *testing.T, i int) {
	t.Helper()
	n := c.nodes[i]
	waitFor(t, startTimeout, "node "+n.id+" ready", func() error {
		if n.proc.exited() {
			t.Fatalf("node %s exited while starting: %v", n.id, n.proc.err)
		}
		r, err := c.try(i, http.MethodGet, "/readyz", nil)
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", r.status, r.body)
		}
		return nil
	})
}

// clusterInfo is GET /cluster.
type clusterInfo struct {
	ID         string       `json:"id"`
	N          int          `json:"n"`
	R          int          `json:"r"`
	W          int          `json:"w"`
	Partitions int          `json:"partitions"`
	Members    []memberInfo `json:"members"`
}

type memberInfo struct {
	ID         string `json:"id"`
	Addr       string `json:"addr"`
	PeerAddr   string `json:"peer_addr"`
	GossipAddr string `json:"gossip_addr"`
	State      string `json:"state"`
}

// waitMembers waits until every running node's GET /cluster lists size
// members, all alive.
func (c *cluster) waitMembers(t *testing.T, size int) {
	t.Helper()
	for i, n := range c.nodes {
		if n.proc.exited() {
			continue
		}
		waitFor(t, startTimeout, fmt.Sprintf("node %s sees %d alive members", n.id, size), func() error {
			r, err := c.try(i, http.MethodGet, "/cluster", nil)
			if err != nil {
				return err
			}
			var info clusterInfo
			if err := json.Unmarshal(r.body, &info); err != nil {
				return fmt.Errorf("/cluster: %d %q: %v", r.status, r.body, err)
			}
			alive := 0
			for _, m := range info.Members {
				if m.State == "alive" {
					alive++
				}
			}
			if len(info.Members) != size || alive != size {
				return fmt.Errorf("/cluster members: %+v", info.Members)
			}
			return nil
		})
	}
}

// response is an answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	body := r.body
	if len(body) > 200 {
		body = body[:200]
	}
	return fmt.Sprintf("%d %s %q", r.status, r.header.Get("Content-Type"), body)
}

// try sends a request to node i: path (with its query) is sent byte for
// byte as written, invalid escapes and dot segments included; header holds
// name/value pairs. A nil body sends none.
func (c *cluster) try(i int, method, path string, body []byte, header ...string) (response, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return c.send(i, method, path, rd, header...)
}

// send is try with any body; a body of unknown length goes chunked.
func (c *cluster) send(i int, method, path string, body io.Reader, header ...string) (response, error) {
	req, err := http.NewRequest(method, "http://"+c.nodes[i].listen+"/", body)
	if err != nil {
		return response{}, err
	}
	// An opaque URL is what the client sends as the request target, so no
	// escaping or cleaning of the client library comes between.
	req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(path, "?")
	for j := 0; j+1 < len(header); j += 2 {
		req.Header.Add(header[j], header[j+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// do is try that fails t on a transport error.
func (c *cluster) do(t *testing.T, i int, method, path string, body []byte, header ...string) response {
	t.Helper()
	r, err := c.try(i, method, path, body, header...)
	if err != nil {
		t.Fatalf("node %s: %s %s: %v", c.nodes[i].id, method, path, err)
	}
	return r
}

// expect fails t unless r has the wanted status.
func expect(t *testing.T, r response, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: got %v, want status %d", what, r, want)
	}
}

// expectContext checks that r carries an X-Context in the contract's
// encoding (unpadded URL-safe base64) and returns it.
func expectContext(t *testing.T, r response, what string) string {
	t.Helper()
	ctx := r.header.Get("X-Context")
	if ctx == "" {
		t.Fatalf("%s: no X-Context in %v", what, r)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(ctx); err != nil {
		t.Errorf("%s: X-Context %q is not unpadded URL-safe base64: %v", what, ctx, err)
	}
	return ctx
}

// expectError checks an error answer: the status, a JSON Content-Type and a
// body with non-empty "error" and "code" strings. It returns the code.
func expectError(t *testing.T, r response, want int, what string) string {
	t.Helper()
	if r.status != want {
		t.Errorf("%s: got %v, want status %d", what, r, want)
	}
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		t.Errorf("%s: error Content-Type %q, want application/json", what, r.header.Get("Content-Type"))
	}
	var body struct {
		Error *string `json:"error"`
		Code  *string `json:"code"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Errorf("%s: error body %q is not JSON: %v", what, r.body, err)
		return ""
	}
	if body.Error == nil || *body.Error == "" || body.Code == nil || *body.Code == "" {
		t.Errorf(`%s: error body %q lacks a non-empty "error" or "code"`, what, r.body)
		return ""
	}
	return *body.Code
}
