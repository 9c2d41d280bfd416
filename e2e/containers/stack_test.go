package containers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Deadlines. They are generous because CI runs this package beside the rest
// of the suite on two cores; what they guard normally takes seconds.
const (
	imageTimeout   = 5 * time.Minute  // deploy/images/build.sh, debootstrap included
	commandTimeout = 2 * time.Minute  // one docker or docker-compose command
	readyTimeout   = 60 * time.Second // containers started to a converged, fronted cluster
	clientTimeout  = 10 * time.Second // one HTTP request through a load balancer
	pollInterval   = 100 * time.Millisecond
)

// requireEnv names the variable that turns "no Docker here" from a skip
// into a failure; CI sets it so that these tests cannot silently not run.
const requireEnv = "DYNAMO_REQUIRE_DOCKER"

// unavailable skips t because something this package needs is missing, or
// fails it when requireEnv asks for the tests to run.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s (%s=1: the container tests must run)", msg, requireEnv)
	}
	t.Skipf("container test skipped: %s (set %s=1 to fail instead)", msg, requireEnv)
}

// repoRoot is the module root: go test runs in the package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "docker-compose.yml")); err != nil {
		t.Fatalf("no docker-compose.yml at the module root: %v", err)
	}
	return root
}

// run runs a command and returns its standard output; on failure the
// error holds its standard error.
func run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		command := strings.Join(append([]string{name}, args...), " ")
		return out, fmt.Errorf("%s: %w\n%s", command, err, bytes.TrimSpace(tail(stderr.Bytes(), 3000)))
	}
	return out, nil
}

// tail is the last n bytes of b, marked as cut when they are not all of it.
func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append([]byte("...\n"), b[len(b)-n:]...)
}

// engine is what the tests drive Docker with, found once per process.
var engine struct {
	once    sync.Once
	compose []string // docker-compose, or docker compose
	images  []string // DYNAMO_IMAGE=..., HAPROXY_IMAGE=..., NGINX_IMAGE=...
	missing string   // why the tests cannot run here; empty when they can
}

// requireEngine skips or fails t (see unavailable) unless a Docker engine
// answers, a compose tool is installed and the images are built. It
// returns the compose command and the image variables for it.
func requireEngine(t *testing.T) (compose, images []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("container test: skipped with -short")
	}
	root := repoRoot(t)
	engine.once.Do(func() { engine.missing = findEngine(root) })
	if engine.missing != "" {
		unavailable(t, "%s", engine.missing)
	}
	return engine.compose, engine.images
}

func findEngine(root string) (missing string) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if _, err := exec.LookPath("docker"); err != nil {
		return "the docker command is not installed"
	}
	if _, err := run(ctx, root, nil, "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Sprintf("no Docker engine answers: %v", err)
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		engine.compose = []string{"docker-compose"}
	} else if _, err := run(ctx, root, nil, "docker", "compose", "version"); err == nil {
		engine.compose = []string{"docker", "compose"}
	} else {
		return "neither docker-compose nor the docker compose plugin is installed"
	}

	ctx, cancel = context.WithTimeout(context.Background(), imageTimeout)
	defer cancel()
	out, err := run(ctx, root, nil, filepath.Join(root, "deploy", "images", "build.sh"))
	if err != nil {
		return fmt.Sprintf("the images cannot be built: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && v != "" && strings.HasSuffix(k, "_IMAGE") {
			engine.images = append(engine.images, sc.Text())
		}
	}
	if len(engine.images) != 3 {
		return fmt.Sprintf("deploy/images/build.sh printed %q, want DYNAMO_IMAGE, HAPROXY_IMAGE and NGINX_IMAGE", out)
	}
	return ""
}

// stack is one docker-compose project made from the repository's
// docker-compose.yml, with the nginx profile, on ports Docker picked.
type stack struct {
	owner   *testing.T // the test whose end removes the project
	root    string     // module root, where docker-compose.yml lives
	compose []string   // the command, up to and including its global flags
	env     []string   // images and ports for the compose file
	project string
	client  *http.Client

	haproxy string // host:port of each load balancer's client port
	nginx   string
	stats   string // HAProxy's stats page
}

// balancer is one of the load balancers in front of the nodes.
type balancer struct {
	name string // its compose service
	addr string // host:port of its client port
	// checks tells whether it checks the nodes' health itself (HAProxy), so
	// that a node is out of its rotation from the moment it notices; nginx
	// learns from the requests that meet the node.
	checks bool
}

func (s *stack) balancers() []balancer {
	return []balancer{{"haproxy", s.haproxy, true}, {"nginx", s.nginx, false}}
}

// upStack starts a new project and waits until both load balancers front
// a cluster of three ready nodes that all see each other. Everything it
// created is removed when t ends, and on failure the containers' logs are
// written to t's log first.
func upStack(t *testing.T) *stack {
	t.Helper()
	compose, images := requireEngine(t)
	root := repoRoot(t)
	s := &stack{
		owner:   t,
		root:    root,
		project: fmt.Sprintf("dynamoe2e%d%06x", os.Getpid(), time.Now().UnixNano()&0xffffff),
		env: append(append([]string(nil), images...),
			"DYNAMO_HTTP_PORT=127.0.0.1:0",
			"DYNAMO_STATS_PORT=127.0.0.1:0",
			"DYNAMO_NGINX_PORT=127.0.0.1:0",
		),
	}
	s.compose = append(compose[:len(compose):len(compose)],
		"--file", filepath.Join(root, "docker-compose.yml"),
		"--project-name", s.project,
		"--profile", "nginx")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	s.client = &http.Client{Timeout: clientTimeout, Transport: tr}

	// Registered before `up`, so that a half-started project goes too.
	t.Cleanup(s.down)
	start := time.Now()
	s.run(t, "up", "--detach", "--no-build")
	s.haproxy = s.port(t, "haproxy", 8000)
	s.stats = s.port(t, "haproxy", 8404)
	s.nginx = s.port(t, "nginx", 8000)
	t.Logf("compose project %s up in %v: haproxy %s (stats %s), nginx %s",
		s.project, time.Since(start).Round(time.Millisecond), s.haproxy, s.stats, s.nginx)

	s.waitWhole(t)
	t.Logf("cluster converged and fronted %v after up", time.Since(start).Round(time.Millisecond))
	return s
}

// run runs docker-compose on s's project and returns its standard
// output, failing t when it fails.
func (s *stack) run(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	all := append(s.compose[1:len(s.compose):len(s.compose)], args...)
	out, err := run(ctx, s.root, s.env, s.compose[0], all...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// port is the host address published for a service's container port.
func (s *stack) port(t *testing.T, service string, port int) string {
	t.Helper()
	addr := strings.TrimSpace(string(s.run(t, "port", service, fmt.Sprint(port))))
	if addr == "" || strings.HasSuffix(addr, ":0") {
		t.Fatalf("%s's port %d is not published: %q", service, port, addr)
	}
	return addr
}

// container is the Docker id of a service's container.
func (s *stack) container(t *testing.T, service string) string {
	t.Helper()
	id := strings.TrimSpace(string(s.run(t, "ps", "--quiet", service)))
	if id == "" {
		t.Fatalf("service %s has no container", service)
	}
	return id
}

// docker runs a docker command (not compose), failing t when it fails.
func (s *stack) docker(t *testing.T, args ...string) { t.Helper(); s.dockerOutput(t, args...) }

// dockerOutput is docker that returns the command's standard output.
func (s *stack) dockerOutput(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := run(ctx, s.root, nil, "docker", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// down logs the containers' output if t failed, then removes the project:
// containers, network and volumes.
func (s *stack) down() {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	all := s.compose[1:len(s.compose):len(s.compose)]
	if s.owner.Failed() {
		logs, err := run(ctx, s.root, s.env, s.compose[0], append(all, "logs", "--no-color", "--tail", "200")...)
		s.owner.Logf("containers' logs (last 200 lines each):\n%s%v", logs, errOrEmpty(err))
	}
	if _, err := run(ctx, s.root, s.env, s.compose[0], append(all, "down", "--volumes", "--remove-orphans", "--timeout", "5")...); err != nil {
		s.owner.Errorf("removing compose project %s: %v", s.project, err)
	}
}

func errOrEmpty(err error) any {
	if err == nil {
		return ""
	}
	return err
}

// serverStates is each backend server's status on HAProxy's stats page
// (UP, DOWN, or a transition like "UP 1/2").
func (s *stack) serverStates() (map[string]string, error) {
	resp, err := s.client.Get("http://" + s.stats + "/;csv")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stats: %s", resp.Status)
	}
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("stats CSV: %w", err)
	}
	if len(rows) == 0 {
		return nil, errors.New("stats CSV is empty")
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(name, "# ")] = i
	}
	px, sv, st := col["pxname"], col["svname"], col["status"]
	if st == 0 {
		return nil, fmt.Errorf("stats CSV has no status column: %q", rows[0])
	}
	states := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > st && row[px] == "nodes" && row[sv] != "BACKEND" {
			states[row[sv]] = row[st]
		}
	}
	return states, nil
}

// waitServerState waits until HAProxy's health check puts server in state.
func (s *stack) waitServerState(t *testing.T, timeout time.Duration, server, state string) {
	t.Helper()
	waitFor(t, timeout, "HAProxy sees "+server+" "+state, func() error {
		states, err := s.serverStates()
		if err != nil {
			return err
		}
		if states[server] != state {
			return fmt.Errorf("servers: %v", states)
		}
		return nil
	})
}

func (s *stack) waitServersUp(t *testing.T, timeout time.Duration, servers ...string) {
	t.Helper()
	for _, server := range servers {
		s.waitServerState(t, timeout, server, "UP")
	}
}

// clusterInfo is the part of GET /cluster the tests read.
type clusterInfo struct {
	ID      string `json:"id"`
	Members []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"members"`
}

// waitConverged waits until, through the load balancer at lb, size
// different nodes have each answered GET /cluster with size alive members.
// Round robin takes the requests to every node in turn.
func (s *stack) waitConverged(t *testing.T, timeout time.Duration, lb string, size int) {
	t.Helper()
	seen := map[string]bool{}
	waitFor(t, timeout, fmt.Sprintf("%d nodes see each other alive", size), func() error {
		r, err := s.try(lb, http.MethodGet, "/cluster", nil)
		if err != nil {
			return err
		}
		var info clusterInfo
		if err := json.Unmarshal(r.body, &info); err != nil {
			return fmt.Errorf("/cluster: %v: %w", r, err)
		}
		alive := 0
		for _, m := range info.Members {
			if m.State == "alive" {
				alive++
			}
		}
		if alive == size && len(info.Members) == size {
			seen[info.ID] = true
		}
		if len(seen) < size {
			return fmt.Errorf("converged so far: %v; last answer from %s: %+v", seen, info.ID, info.Members)
		}
		return nil
	})
}

// waitFor polls cond until it returns nil, failing t with cond's last
// error if that does not happen within timeout.
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

// try sends a request to the load balancer at lb. path (with its query)
// is sent byte for byte as written; header holds name/value pairs; a nil
// body sends none.
func (s *stack) try(lb, method, path string, body []byte, header ...string) (response, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+lb+"/", rd)
	if err != nil {
		return response{}, err
	}
	// An opaque URL is sent as the request target as it is: no escaping or
	// cleaning by the client library comes between the test and the proxy.
	req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(path, "?")
	for j := 0; j+1 < len(header); j += 2 {
		req.Header.Add(header[j], header[j+1])
	}
	resp, err := s.client.Do(req)
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
func (s *stack) do(t *testing.T, lb, method, path string, body []byte, header ...string) response {
	t.Helper()
	r, err := s.try(lb, method, path, body, header...)
	if err != nil {
		t.Fatalf("%s %s through %s: %v", method, path, lb, err)
	}
	return r
}
