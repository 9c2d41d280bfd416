package containers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The load the failure tests run: through each load balancer, a few clients,
// each writing a new key and reading it back at a steady pace.
const (
	loadClients = 4
	loadPace    = 25 * time.Millisecond // between one client's write+read pairs
	loadPhase   = 200                   // requests each phase of a test waits for, per load balancer
	minOutage   = 3 * time.Second       // shortest time a node stays out
	catchUp     = 60 * time.Second      // a returned node to hold what it missed
	slow        = time.Second           // a request this slow is counted in the figures
)

// outcome is one client request of the load.
type outcome struct {
	start time.Time
	took  time.Duration
	err   error // nil when the answer was the expected one
}

// load is the clients' requests through one load balancer and what they
// recorded.
type load struct {
	s    *stack
	lb   balancer
	stop func() // stops the clients and waits for them; idempotent

	mu       sync.Mutex            // guards outcomes and acked
	outcomes []outcome             // every request, in the order they ended
	acked    map[string]ackedWrite // path: the write a 204 answered
}

type ackedWrite struct {
	value []byte
	start time.Time
}

// startLoads starts a load through each load balancer, writing keys under
// /keys/<test>.<balancer>/. They are stopped when t ends, if not before.
func (s *stack) startLoads(t *testing.T) []*load {
	var loads []*load
	for _, lb := range s.balancers() {
		loads = append(loads, s.startLoad(t, lb, strings.ReplaceAll(t.Name(), "/", ".")+"."+lb.name))
	}
	return loads
}

func (s *stack) startLoad(t *testing.T, lb balancer, prefix string) *load {
	l := &load{s: s, lb: lb, acked: map[string]ackedWrite{}}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for c := range loadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.client(quit, fmt.Sprintf("/keys/%s/%d/", prefix, c))
		}()
	}
	l.stop = sync.OnceFunc(func() { close(quit); wg.Wait() })
	t.Cleanup(l.stop)
	return l
}

func stopLoads(loads []*load) {
	for _, l := range loads {
		l.stop()
	}
}

func (l *load) client(quit <-chan struct{}, prefix string) {
	tick := time.NewTicker(loadPace)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-quit:
			return
		case <-tick.C:
		}
		path := fmt.Sprint(prefix, seq)
		value := []byte(path)
		start := time.Now()
		r, err := l.s.try(l.lb.addr, http.MethodPut, path, value)
		if err == nil && r.status != http.StatusNoContent {
			err = fmt.Errorf("PUT %s: %v", path, r)
		}
		l.record(start, err)
		if err != nil {
			continue
		}
		l.mu.Lock()
		l.acked[path] = ackedWrite{value, start}
		l.mu.Unlock()

		start = time.Now()
		r, err = l.s.try(l.lb.addr, http.MethodGet, path, nil)
		if err == nil && !holds(r, value) {
			err = fmt.Errorf("GET %s: %v, want %q", path, r, value)
		}
		l.record(start, err)
	}
}

func (l *load) record(start time.Time, err error) {
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outcomes = append(l.outcomes, outcome{start, took, err})
}

// sent is how many requests started at or after since.
func (l *load) sent(since time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.outcomes {
		if !o.start.Before(since) {
			n++
		}
	}
	return n
}

// waitSent waits until each load has sent loadPhase requests that started
// at or after since, and at least least has passed since then.
func waitSent(t *testing.T, loads []*load, since time.Time, least time.Duration, what string) {
	t.Helper()
	waitFor(t, readyTimeout, what, func() error {
		for _, l := range loads {
			if n := l.sent(since); n < loadPhase || time.Since(since) < least {
				return fmt.Errorf("%d requests through %s in %v", n, l.lb.name, time.Since(since).Round(time.Millisecond))
			}
		}
		return nil
	})
}

// ackedIn is the acknowledged writes sent in [from, to).
func (l *load) ackedIn(from, to time.Time) map[string][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	in := map[string][]byte{}
	for path, w := range l.acked {
		if !w.start.Before(from) && w.start.Before(to) {
			in[path] = w.value
		}
	}
	return in
}

// judge fails t for each request through l that failed although it had to
// succeed, up to ten: those sent before out, when the node was taken out,
// and those sent at or after noticed, when the load balancer had taken it
// out of its rotation. Failures in between are logged. It logs how many
// requests there were, and how many took longer than slow from out on:
// those that met the node out and waited for a timeout before their retry.
func (l *load) judge(t *testing.T, out, noticed time.Time, what string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		failed []error
		slowed int
		worst  time.Duration
	)
	for _, o := range l.outcomes {
		if !o.start.Before(out) {
			if o.took > slow {
				slowed++
			}
			worst = max(worst, o.took)
		}
		switch {
		case o.err == nil:
		case !o.start.Before(out) && o.start.Before(noticed):
			t.Logf("failed before %s noticed: %v", l.lb.name, o.err)
		default:
			failed = append(failed, o.err)
		}
	}
	t.Logf("%d requests through %s, %d failed %s; of those sent from the fault on, %d took over %v, the slowest %v",
		len(l.outcomes), l.lb.name, len(failed), what, slowed, slow, worst.Round(time.Millisecond))
	for i, err := range failed {
		if i == 10 {
			t.Errorf("... and %d more", len(failed)-i)
			break
		}
		t.Errorf("failed %s: %v", what, err)
	}
}

// testOutage runs a load through each load balancer, takes service's node
// out with takeOut and brings it back with bringBack.
//
// HAProxy checks /readyz every second: requests sent before it marks the
// node down may fail (its retries should save most; those that fail are
// logged), every request sent after that must succeed. nginx has no active
// check: a request that meets the node out goes to another node once its
// connection fails or its proxy timeout passes, and the node is skipped for
// a while (deploy/nginx.conf). So behind nginx no request may fail at all,
// and the few that paid for finding the node out show as slow.
//
// The returned node must come to hold every write it missed, and every
// acknowledged write must be readable at the end through the load balancer
// that acknowledged it.
func (s *stack) testOutage(t *testing.T, service string, takeOut, bringBack func(*testing.T, string)) {
	s.waitWhole(t)
	loads := s.startLoads(t)
	waitSent(t, loads, time.Now(), 0, "the load running")

	addr := s.nodeIP(t, service)
	out := time.Now()
	takeOut(t, service)
	s.waitServerState(t, readyTimeout, service, "DOWN")
	noticed := time.Now()
	t.Logf("HAProxy marked %s down %v after it was taken out", service, noticed.Sub(out).Round(time.Millisecond))
	waitSent(t, loads, noticed, minOutage, "the load running while "+service+" is out")

	back := time.Now()
	bringBack(t, service)
	s.followAddress(t, service, addr)
	s.waitWhole(t)
	t.Logf("%s back in the cluster and both load balancers %v after it was brought back", service, time.Since(back).Round(time.Millisecond))
	waitSent(t, loads, time.Now(), 0, "the load running after "+service+" is back")
	stopLoads(loads)

	missed := map[string][]byte{}
	for _, l := range loads {
		maps.Copy(missed, l.ackedIn(out, back))
	}
	took := s.waitLocal(t, service, missed)
	t.Logf("%s held the %d writes acknowledged while it was out %v after it was brought back",
		service, len(missed), took.Round(time.Millisecond))

	for _, l := range loads {
		t.Run(l.lb.name, func(t *testing.T) {
			if l.lb.checks {
				l.judge(t, out, noticed, "after "+l.lb.name+" noticed "+service+" out")
			} else {
				l.judge(t, out, out, "after "+service+" was taken out")
			}
			s.checkAcked(t, l.lb.addr, l.ackedIn(time.Time{}, time.Now()))
		})
	}
}

// testNetworkCut is testOutage with the node's container disconnected from
// the network and connected again, for longer than it takes both sides to
// declare each other dead: the nodes must find each other again by
// themselves (memberlist never probes dead members; the node's reconnect
// loop does). If they do not, the node is restarted so that the tests after
// this one find a whole cluster.
func (s *stack) testNetworkCut(t *testing.T, service string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarting %s so that it rejoins", service)
			s.docker(t, "restart", "--time", "10", s.container(t, service))
		}
	})
	cut := func(t *testing.T, service string) {
		s.disconnect(t, service)
		s.waitSeenDead(t, s.haproxy, service)
	}
	s.testOutage(t, service, cut, s.connect)
}

// waitSeenDead waits until a node answering through lb lists service's
// member as dead.
func (s *stack) waitSeenDead(t *testing.T, lb, service string) {
	t.Helper()
	start := time.Now()
	waitFor(t, readyTimeout, "the others see "+service+" dead", func() error {
		r, err := s.try(lb, http.MethodGet, "/cluster", nil)
		if err != nil {
			return err
		}
		var info clusterInfo
		if err := json.Unmarshal(r.body, &info); err != nil {
			return fmt.Errorf("/cluster: %v: %w", r, err)
		}
		for _, m := range info.Members {
			if m.ID == service && m.State == "dead" {
				return nil
			}
		}
		return fmt.Errorf("%s sees %+v", info.ID, info.Members)
	})
	t.Logf("the others saw %s dead %v after it was cut off", service, time.Since(start).Round(time.Millisecond))
}

// testRollingRestart restarts the three nodes one after the other (SIGTERM,
// then start again; each back in the cluster and both load balancers'
// rotations before the next), under load through both, and checks that no
// request failed and every acknowledged write is still there.
func (s *stack) testRollingRestart(t *testing.T) {
	s.waitWhole(t)
	loads := s.startLoads(t)
	waitSent(t, loads, time.Now(), 0, "the load running")
	for _, service := range []string{"node1", "node2", "node3"} {
		addr := s.nodeIP(t, service)
		start := time.Now()
		s.docker(t, "restart", "--time", "10", s.container(t, service))
		s.followAddress(t, service, addr)
		s.waitWhole(t)
		t.Logf("%s restarted and back in the cluster and both load balancers in %v", service, time.Since(start).Round(time.Millisecond))
	}
	waitSent(t, loads, time.Now(), 0, "the load running after the restarts")
	stopLoads(loads)
	for _, l := range loads {
		t.Run(l.lb.name, func(t *testing.T) {
			l.judge(t, time.Time{}, time.Time{}, "during the rolling restart")
			s.checkAcked(t, l.lb.addr, l.ackedIn(time.Time{}, time.Now()))
		})
	}
}

// followAddress reloads nginx when service's container came back at
// another address than addr: nginx resolves the node names only when it
// loads its configuration (deploy/nginx.conf), where HAProxy follows
// Docker's DNS. Docker 20.10 keeps a container's address across restarts
// and gives a reconnected one the lowest free address, its own; an engine
// that does otherwise shows in the log.
func (s *stack) followAddress(t *testing.T, service, addr string) {
	t.Helper()
	now := s.nodeIP(t, service)
	if now == addr {
		return
	}
	t.Logf("%s came back at %s, not %s: reloading nginx", service, now, addr)
	s.docker(t, "kill", "--signal", "HUP", s.container(t, "nginx"))
}

// Ways to take a node out, and to bring it back.

func (s *stack) kill(t *testing.T, service string) {
	s.docker(t, "kill", "--signal", "KILL", s.container(t, service))
}

func (s *stack) start(t *testing.T, service string) { s.docker(t, "start", s.container(t, service)) }

func (s *stack) pause(t *testing.T, service string) { s.docker(t, "pause", s.container(t, service)) }

func (s *stack) unpause(t *testing.T, service string) {
	s.docker(t, "unpause", s.container(t, service))
}

func (s *stack) disconnect(t *testing.T, service string) {
	s.docker(t, "network", "disconnect", s.network(t), s.container(t, service))
}

// connect puts the container back on the network under its service's name,
// which the load balancers and the other nodes know it by.
func (s *stack) connect(t *testing.T, service string) {
	s.docker(t, "network", "connect", "--alias", service, s.network(t), s.container(t, service))
}

// network is the name Docker gives the compose file's network `dynamo`.
func (s *stack) network(t *testing.T) string {
	t.Helper()
	out := strings.TrimSpace(string(s.dockerOutput(t, "network", "ls", "--quiet", "--format", "{{.Name}}",
		"--filter", "label=com.docker.compose.project="+s.project,
		"--filter", "label=com.docker.compose.network=dynamo")))
	if out == "" || strings.Contains(out, "\n") {
		t.Fatalf("compose project %s: want one network dynamo, found %q", s.project, out)
	}
	return out
}

// nodeAddr is service's client address on the compose network, which the
// host reaches directly (Linux).
func (s *stack) nodeAddr(t *testing.T, service string) string {
	t.Helper()
	return s.nodeIP(t, service) + ":8080"
}

// nodeIP is service's address on the compose network.
func (s *stack) nodeIP(t *testing.T, service string) string {
	t.Helper()
	ip := strings.TrimSpace(string(s.dockerOutput(t, "inspect", "--format",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", s.container(t, service))))
	if ip == "" {
		t.Fatalf("%s's container has no address", service)
	}
	return ip
}

// waitWhole waits until HAProxy has every node up, every node sees the
// three alive, and nginx sends requests to all three again.
func (s *stack) waitWhole(t *testing.T) {
	t.Helper()
	s.waitServersUp(t, readyTimeout, "node1", "node2", "node3")
	s.waitConverged(t, readyTimeout, s.haproxy, 3)
	s.waitConverged(t, readyTimeout, s.nginx, 3)
}

// waitLocal waits until service's node holds every one of writes itself
// (GET ?local=true at the node's own address, not through a load
// balancer), and returns how long that took.
func (s *stack) waitLocal(t *testing.T, service string, writes map[string][]byte) time.Duration {
	t.Helper()
	start := time.Now()
	node := s.nodeAddr(t, service)
	missing := make([]string, 0, len(writes))
	for path := range writes {
		missing = append(missing, path)
	}
	slices.Sort(missing)
	waitFor(t, catchUp, service+" holding every write it missed", func() error {
		still := missing[:0]
		var first response
		for _, path := range missing {
			r, err := s.try(node, http.MethodGet, path+"?local=true", nil)
			if err != nil {
				return err
			}
			if !holds(r, writes[path]) {
				if len(still) == 0 {
					first = r
				}
				still = append(still, path)
			}
		}
		missing = still
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d missing, first %s: %v", len(missing), len(writes), missing[0], first)
		}
		return nil
	})
	return time.Since(start)
}

// holds reports whether r, a GET's answer, holds value: as the one live
// version, or as one of several siblings. A write can become two siblings
// of the same value when a load balancer sends it again to another node
// after the first one stored it and died before answering: the retry is a
// second write, concurrent with the first.
func holds(r response, value []byte) bool {
	switch r.status {
	case http.StatusOK:
		return bytes.Equal(r.body, value)
	case http.StatusMultipleChoices:
		_, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if err != nil {
			return false
		}
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if b, err := io.ReadAll(part); err == nil && bytes.Equal(b, value) {
				return true
			}
		}
	}
	return false
}

// checkAcked reads every acknowledged write back through lb.
func (s *stack) checkAcked(t *testing.T, lb string, acked map[string][]byte) {
	t.Helper()
	paths := make([]string, 0, len(acked))
	for path := range acked {
		paths = append(paths, path)
	}
	var (
		mu       sync.Mutex
		missing  []string
		siblings int // writes read back beside a copy of themselves (see holds)
		wg       sync.WaitGroup
		next     = make(chan string)
	)
	for range loadClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range next {
				r, err := s.try(lb, http.MethodGet, path, nil)
				if err == nil && holds(r, acked[path]) {
					if r.status == http.StatusMultipleChoices {
						mu.Lock()
						siblings++
						mu.Unlock()
					}
					continue
				}
				mu.Lock()
				missing = append(missing, fmt.Sprintf("%s: %v %v", path, r, err))
				mu.Unlock()
			}
		}()
	}
	for _, path := range paths {
		next <- path
	}
	close(next)
	wg.Wait()
	if siblings > 0 {
		t.Logf("%d acknowledged writes read back as siblings: sent twice by the load balancer", siblings)
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("%d of %d acknowledged writes not read back, first: %q", len(missing), len(paths), missing[:min(5, len(missing))])
	}
}
