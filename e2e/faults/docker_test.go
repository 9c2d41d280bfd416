package faults_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/client"
	"github.com/dynamo-kv/dynamo/e2e/faults"
	"github.com/dynamo-kv/dynamo/node/nodetest"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// The container mode: every node is the real binary in its own container
// (the image deploy/images/build.sh makes FROM scratch), on a private
// Docker network. Faults are what an operator meets: docker kill (SIGKILL)
// and docker start on the same data, docker pause (the cgroup freezer), and
// partitions made of iptables rules inside the nodes' network namespaces,
// which drop every packet between nodes of different groups, gossip and
// replication alike, while the test's clients still reach each node
// through a port published on 127.0.0.1.

// requireDockerEnv turns "no Docker here" from a skip into a failure; CI
// sets it so that the container mode cannot silently not run.
const requireDockerEnv = "DYNAMO_REQUIRE_DOCKER"

const (
	dockerCommandTimeout = 2 * time.Minute // one docker command (build.sh included)
	dockerReadyTimeout   = 90 * time.Second
	// clientAttemptTimeout bounds one request of the workload: past the
	// nodes' request timeout (2s), a node that does not answer is paused
	// or cut off, and the request counts as unavailable.
	clientAttemptTimeout = 5 * time.Second
	// pauseAttempts bounds the tries of one docker pause.
	pauseAttempts = 10
)

// dockerEngine is found once per test process.
var dockerEngine struct {
	once    sync.Once
	image   string // the dynamo image
	missing string // why the container mode cannot run here
}

// requireDocker skips t, or fails it when requireDockerEnv=1, unless a
// Docker engine answers, the dynamo image builds and iptables can be run
// in a container's network namespace. It returns the image.
func requireDocker(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("container mode: skipped with -short")
	}
	dockerEngine.once.Do(func() { dockerEngine.missing = findDocker() })
	if msg := dockerEngine.missing; msg != "" {
		if os.Getenv(requireDockerEnv) == "1" {
			t.Fatalf("%s (%s=1: the container mode must run)", msg, requireDockerEnv)
		}
		t.Skipf("container mode skipped: %s (set %s=1 to fail instead)", msg, requireDockerEnv)
	}
	return dockerEngine.image
}

func findDocker() (missing string) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCommandTimeout)
	defer cancel()
	for _, tool := range []string{"docker", "nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s is not installed", tool)
		}
	}
	if os.Geteuid() != 0 {
		return "partitions need root (nsenter and iptables in the containers' network namespaces)"
	}
	if _, err := command(ctx, "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Sprintf("no Docker engine answers: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err.Error()
	}
	out, err := command(ctx, filepath.Join(root, "deploy", "images", "build.sh"), "dynamo")
	if err != nil {
		return fmt.Sprintf("the dynamo image cannot be built: %v", err)
	}
	image, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "DYNAMO_IMAGE=")
	if !ok || image == "" {
		return fmt.Sprintf("deploy/images/build.sh dynamo printed %q, want DYNAMO_IMAGE=...", out)
	}
	dockerEngine.image = image
	return ""
}

// command runs a command and returns its standard output; on failure the
// error holds its standard error.
func command(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// dockerCluster is a faults.Cluster of containers. The Injector's methods
// run on one goroutine; the client side (Up, Put, Get, ...) on many.
type dockerCluster struct {
	t       *testing.T
	prefix  string // of every container's and the network's name
	network string
	ids     []string
	hc      *http.Client

	mu    sync.Mutex // guards every field below
	nodes map[string]*dockerNode
	// groups is the partition in force (nil: none), applied again when a
	// killed node comes back with a fresh network namespace.
	groups [][]string

	readiness sync.WaitGroup // goroutines waiting for restarted nodes
	stop      context.CancelFunc
	ctx       context.Context
}

// dockerNode is one node's container as the clients see it.
type dockerNode struct {
	container string
	// killed until docker start; ready once /readyz answered after that.
	killed, ready bool
	// generation counts starts, so a stale readiness wait does not mark a
	// node that was killed again meanwhile.
	generation int
	base       string         // http://127.0.0.1:port, published by Docker
	client     *client.Client // at base
}

var (
	_ faults.Cluster     = (*dockerCluster)(nil)
	_ faults.HintCounter = (*dockerCluster)(nil)
)

// startDockerCluster starts size nodes from image with flags, every one
// given every other as a seed, and waits until each is ready and sees all
// of them alive. Everything is removed when t ends.
func startDockerCluster(t *testing.T, image string, size int, flags []string) *dockerCluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &dockerCluster{
		t:      t,
		prefix: fmt.Sprintf("dynamo-faults-%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000),
		hc: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 16,
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		}},
		nodes: map[string]*dockerNode{},
		ctx:   ctx,
		stop:  cancel,
	}
	c.network = c.prefix
	t.Cleanup(c.remove)
	c.docker(t, "network", "create", "--label", "org.dynamo-kv.test=faults", c.network)

	start := time.Now()
	var seeds []string
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		seeds = append(seeds, id+":7946")
	}
	for _, id := range c.ids {
		name := c.prefix + "-" + id
		args := []string{"run", "--detach", "--name", name, "--hostname", id,
			"--label", "org.dynamo-kv.test=faults",
			"--network", c.network, "--network-alias", id,
			"--publish", "127.0.0.1::8080",
			"--env", "DYNAMO_ID=" + id, "--env", "DYNAMO_ADVERTISE=" + id,
			"--env", "DYNAMO_JOIN=" + strings.Join(seeds, ","),
			image}
		c.docker(t, append(args, flags...)...)
		c.mu.Lock() // the nodes started before read the map
		c.nodes[id] = &dockerNode{container: name}
		c.mu.Unlock()
		if err := c.started(id); err != nil {
			t.Fatal(err)
		}
	}
	c.waitWhole(t)
	t.Logf("%d containers of %s started, ready and joined in %.1fs", size, image, time.Since(start).Seconds())
	return c
}

// docker runs a docker command for the test's set-up, failing t on error.
func (c *dockerCluster) docker(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := c.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *dockerCluster) run(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCommandTimeout)
	defer cancel()
	return command(ctx, "docker", args...)
}

// remove stops the readiness waits and removes the containers, their
// volumes and the network. The node logs of a failed test are printed
// first.
func (c *dockerCluster) remove() {
	c.stop()
	c.readiness.Wait()
	var names []string
	for _, id := range c.ids {
		names = append(names, c.prefix+"-"+id)
	}
	if c.t.Failed() {
		for _, name := range names {
			c.t.Logf("errors and last lines of %s's log:\n%s", name, c.logs(name))
		}
	}
	if len(names) > 0 {
		if _, err := c.run(append([]string{"rm", "--force", "--volumes"}, names...)...); err != nil {
			c.t.Errorf("removing the containers: %v", err)
		}
	}
	if _, err := c.run("network", "rm", c.network); err != nil {
		c.t.Errorf("removing the network: %v", err)
	}
}

// logs returns a container's log lines at level ERROR and its last lines.
func (c *dockerCluster) logs(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "logs", name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("docker logs %s: %v", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var keep []string
	for _, l := range lines {
		if strings.Contains(l, "level=ERROR") && len(keep) < 40 {
			keep = append(keep, l)
		}
	}
	keep = append(keep, "...")
	return strings.Join(append(keep, lines[max(0, len(lines)-30):]...), "\n")
}

// started reads the port Docker published node id's client address on
// (a new one at every start) and points the node's client at it.
func (c *dockerCluster) started(id string) error {
	c.mu.Lock()
	n := c.nodes[id]
	c.mu.Unlock()
	out, err := c.run("port", n.container, "8080/tcp")
	if err != nil {
		return err
	}
	addr := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return fmt.Errorf("docker port %s: %q is no address", n.container, addr)
	}
	cl, err := client.New([]string{"http://" + addr},
		client.WithHTTPClient(c.hc), client.WithRouting(false),
		client.WithRetry(1, 0, 0), client.WithAttemptTimeout(clientAttemptTimeout))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n.base, n.client, n.killed, n.ready = "http://"+addr, cl, false, false
	n.generation++
	gen := n.generation
	c.readiness.Go(func() { c.awaitReady(id, gen, n.base) })
	return nil
}

// awaitReady polls the node's /readyz until it answers 200, then makes the
// node one the clients pick (unless it was killed again meanwhile).
func (c *dockerCluster) awaitReady(id string, gen int, base string) {
	deadline := time.Now().Add(dockerReadyTimeout)
	for c.ctx.Err() == nil && time.Now().Before(deadline) {
		if c.ready(base) {
			c.mu.Lock()
			if n := c.nodes[id]; n.generation == gen && !n.killed {
				n.ready = true
			}
			c.mu.Unlock()
			return
		}
		// Pacing a poll, not waiting for an event.
		select {
		case <-time.After(50 * time.Millisecond):
		case <-c.ctx.Done():
		}
	}
}

// ready asks the node at base for /readyz once.
func (c *dockerCluster) ready(base string) bool {
	status, _, err := c.get(base + "/readyz")
	return err == nil && status == http.StatusOK
}

// get GETs url and reads its whole answer within one attempt's timeout.
func (c *dockerCluster) get(url string) (status int, body []byte, err error) {
	ctx, cancel := context.WithTimeout(c.ctx, clientAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// waitWhole waits until every node is ready and sees every other alive.
func (c *dockerCluster) waitWhole(t *testing.T) {
	t.Helper()
	nodetest.Eventually(t, dockerReadyTimeout, c.whole)
}

// whole says why the cluster is not yet whole, or nil.
func (c *dockerCluster) whole() error {
	if up := c.Up(); len(up) != len(c.ids) {
		return fmt.Errorf("ready: %v", up)
	}
	for _, id := range c.ids {
		cl, err := c.client(id)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.ctx, clientAttemptTimeout)
		info, err := cl.Cluster(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		alive := 0
		for _, m := range info.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if alive != len(c.ids) {
			return fmt.Errorf("%s sees %d of %d members alive", id, alive, len(c.ids))
		}
	}
	return nil
}

func (c *dockerCluster) Nodes() []string { return c.ids }

func (c *dockerCluster) Up() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var up []string
	for _, id := range c.ids {
		if n := c.nodes[id]; !n.killed && n.ready {
			up = append(up, id)
		}
	}
	return up
}

// client returns the client of node id, unless it is killed.
func (c *dockerCluster) client(id string) (*client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil || n.killed || n.client == nil {
		return nil, fmt.Errorf("%w: %s is down", faults.ErrUnavailable, id)
	}
	return n.client, nil
}

// classifyHTTP marks the failures the contract allows under faults: a 503,
// and no answer at all (a connection refused by a killed node, reset by
// one dying, or a request timing out at a paused or cut-off one); the
// request may still have landed, as the checker assumes of every failure.
// Any other status is a bug.
func classifyHTTP(err error) error {
	var e *client.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e) && e.Status != http.StatusServiceUnavailable:
		return err
	}
	return fmt.Errorf("%w: %w", faults.ErrUnavailable, err)
}

func (c *dockerCluster) Put(ctx context.Context, via, key string, value []byte, clock version.Clock, hasContext bool) (version.Clock, error) {
	cl, err := c.client(via)
	if err != nil {
		return nil, err
	}
	opts := []client.WriteOption{client.ContentType("text/plain")}
	if hasContext {
		opts = append(opts, client.CausalContext(version.EncodeContext(clock)))
	}
	token, err := cl.Put(ctx, key, value, opts...)
	if err != nil {
		return nil, classifyHTTP(err)
	}
	return version.DecodeContext(token)
}

func (c *dockerCluster) Get(ctx context.Context, via, key string) (faults.Read, error) {
	cl, err := c.client(via)
	if err != nil {
		return faults.Read{}, err
	}
	return readOver(ctx, cl, key)
}

// readOver reads key through cl, as a faults.Read.
func readOver(ctx context.Context, cl *client.Client, key string, opts ...client.ReadOption) (faults.Read, error) {
	res, err := cl.Get(ctx, key, opts...)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		return faults.Read{}, classifyHTTP(err)
	}
	r := faults.Read{ETag: res.ETag}
	if res.Context != "" {
		if r.Context, err = version.DecodeContext(res.Context); err != nil {
			return faults.Read{}, fmt.Errorf("the X-Context of %q: %w", key, err)
		}
	}
	for _, s := range res.Siblings {
		r.Siblings = append(r.Siblings, faults.Sibling{Value: s.Value})
	}
	return r, nil
}

func (c *dockerCluster) Delete(ctx context.Context, via, key string, clock version.Clock) (version.Clock, error) {
	cl, err := c.client(via)
	if err != nil {
		return nil, err
	}
	token, err := cl.Delete(ctx, key, client.CausalContext(version.EncodeContext(clock)))
	if err != nil {
		return nil, classifyHTTP(err)
	}
	return version.DecodeContext(token)
}

func (c *dockerCluster) Replicas(key string) ([]string, error) {
	var errs []error
	for _, id := range c.Up() {
		cl, err := c.client(id)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, clientAttemptTimeout)
		info, err := cl.KeyInfo(ctx, key)
		cancel()
		if err == nil {
			return info.PreferenceList, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", id, err))
	}
	return nil, fmt.Errorf("no node up answered for %q's replicas: %w", key, errors.Join(errs...))
}

func (c *dockerCluster) Local(id, key string) (faults.Read, error) {
	cl, err := c.client(id)
	if err != nil {
		return faults.Read{}, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, clientAttemptTimeout)
	defer cancel()
	return readOver(ctx, cl, key, client.Local())
}

// PendingHints sums dynamo_hints_pending over every node's /metrics.
func (c *dockerCluster) PendingHints() (int, error) {
	total := 0
	for _, id := range c.ids {
		c.mu.Lock()
		base, down := c.nodes[id].base, c.nodes[id].killed
		c.mu.Unlock()
		if down {
			return 0, fmt.Errorf("%s is down", id)
		}
		n, err := c.pendingHints(base)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", id, err)
		}
		total += n
	}
	return total, nil
}

func (c *dockerCluster) pendingHints(base string) (int, error) {
	status, body, err := c.get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", status)
	}
	total := 0
	for line := range strings.Lines(string(body)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !(name == "dynamo_hints_pending" || strings.HasPrefix(name, "dynamo_hints_pending{")) {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("dynamo_hints_pending %q: %w", value, err)
		}
		total += int(f)
	}
	return total, nil
}

// Kill sends SIGKILL: no shutdown, only what was fsynced survives.
func (c *dockerCluster) Kill(id string) error {
	c.mu.Lock()
	n := c.nodes[id]
	n.killed, n.ready = true, false
	c.mu.Unlock()
	_, err := c.run("kill", "--signal", "KILL", n.container)
	return err
}

// Restart starts the killed container again on its volume; it joins the
// clients' choice once ready, and the partition in force, if any, is
// applied to its fresh network namespace (and to the others, should it
// have come back at another address).
func (c *dockerCluster) Restart(id string) error {
	if _, err := c.run("start", c.nodes[id].container); err != nil {
		return err
	}
	if err := c.started(id); err != nil {
		return err
	}
	c.mu.Lock()
	groups := c.groups
	c.mu.Unlock()
	if groups != nil {
		return c.Partition(groups...)
	}
	return nil
}

// Pause freezes the container's processes (the cgroup freezer). A process
// in uninterruptible sleep (an fsync, say, while a restarted node opens
// its store) can make the freeze time out; it is tried again a few times.
func (c *dockerCluster) Pause(id string) error {
	var err error
	for attempt := range pauseAttempts {
		if _, err = c.run("pause", c.nodes[id].container); err == nil || !strings.Contains(err.Error(), "unable to freeze") {
			return err
		}
		c.t.Logf("pause %s, attempt %d: %v", id, attempt+1, err)
		// Pacing retries, not waiting for an event.
		select {
		case <-time.After(100 * time.Millisecond):
		case <-c.ctx.Done():
			return err
		}
	}
	return err
}

func (c *dockerCluster) Resume(id string) error {
	_, err := c.run("unpause", c.nodes[id].container)
	return err
}

// Partition replaces the iptables rules of every running node: each drops
// every packet from and to the addresses of nodes outside its group.
func (c *dockerCluster) Partition(groups ...[]string) error {
	group := map[string]int{}
	for i, g := range groups {
		for _, id := range g {
			group[id] = i + 1
		}
	}
	c.mu.Lock()
	c.groups = groups
	c.mu.Unlock()
	running, err := c.runningNodes()
	if err != nil {
		return err
	}
	var errs []error
	for id, self := range running {
		var rules [][]string
		for other, peer := range running {
			if group[other] != group[id] {
				rules = append(rules,
					[]string{"-A", "INPUT", "-s", peer.ip, "-j", "DROP"},
					[]string{"-A", "OUTPUT", "-d", peer.ip, "-j", "DROP"})
			}
		}
		errs = append(errs, setRules(self.pid, rules))
	}
	return errors.Join(errs...)
}

// Reconnect removes every node's rules.
func (c *dockerCluster) Reconnect() error {
	c.mu.Lock()
	c.groups = nil
	c.mu.Unlock()
	running, err := c.runningNodes()
	if err != nil {
		return err
	}
	var errs []error
	for _, self := range running {
		errs = append(errs, setRules(self.pid, nil))
	}
	return errors.Join(errs...)
}

// netns is a running container's network namespace: its init's pid (paused
// or not) and its address on the network.
type netns struct {
	pid int
	ip  string
}

// runningNodes returns the network namespace of every container running,
// paused included.
func (c *dockerCluster) runningNodes() (map[string]netns, error) {
	names := make([]string, len(c.ids))
	for i, id := range c.ids {
		names[i] = c.nodes[id].container
	}
	out, err := c.run(append([]string{"inspect", "--format",
		"{{.Name}} {{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"}, names...)...)
	if err != nil {
		return nil, err
	}
	running := map[string]netns{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 {
			continue // not running: no pid or no address
		}
		pid, err := strconv.Atoi(fields[1])
		if err != nil || pid == 0 {
			continue
		}
		id := strings.TrimPrefix(fields[0], "/"+c.prefix+"-")
		running[id] = netns{pid: pid, ip: fields[2]}
	}
	return running, nil
}

// setRules flushes the filter table's INPUT and OUTPUT chains in the
// network namespace of pid and appends rules, in one iptables-restore so
// that a node never sees half a partition. Docker's own rules inside the
// namespace (its DNS, in the nat table) are left alone.
func setRules(pid int, rules [][]string) error {
	var script strings.Builder
	script.WriteString("*filter\n-F INPUT\n-F OUTPUT\n")
	for _, r := range rules {
		script.WriteString(strings.Join(r, " ") + "\n")
	}
	script.WriteString("COMMIT\n")
	ctx, cancel := context.WithTimeout(context.Background(), dockerCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(pid), "--net", "iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore in the network namespace of %d: %w: %s", pid, err, bytes.TrimSpace(out))
	}
	return nil
}
