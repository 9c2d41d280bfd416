package containers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The load the failure tests run: a few clients, each writing a new key and
// reading it back at a steady pace, through one load balancer.
const (
	loadClients = 4
	loadPace    = 25 * time.Millisecond // between one client's write+read pairs
	loadPhase   = 200                   // requests each phase of a test waits for
	minOutage   = 3 * time.Second       // shortest time a node stays out
	catchUp     = 60 * time.Second      // a returned node to hold what it missed
)

// outcome is one client request of the load.
type outcome struct {
	start time.Time
	err   error // nil when the answer was the expected one
}

// load is the clients' requests and what they recorded.
type load struct {
	s    *stack
	lb   string
	stop func() // stops the clients and waits for them; idempotent

	mu       sync.Mutex            // guards outcomes and acked
	outcomes []outcome             // every request, in the order they ended
	acked    map[string]ackedWrite // path: the write a 204 answered
}

type ackedWrite struct {
	value []byte
	start time.Time
}

// startLoad starts the clients, writing keys under /keys/<prefix>/. They are
// stopped when t ends, if not before.
func (s *stack) startLoad(t *testing.T, lb, prefix string) *load {
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
		r, err := l.s.try(l.lb, http.MethodPut, path, value)
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
		r, err = l.s.try(l.lb, http.MethodGet, path, nil)
		if err == nil && !holds(r, value) {
			err = fmt.Errorf("GET %s: %v, want %q", path, r, value)
		}
		l.record(start, err)
	}
}

func (l *load) record(start time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outcomes = append(l.outcomes, outcome{start, err})
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

// waitSent waits until loadPhase requests started at or after since, and
// at least least has passed since then.
func (l *load) waitSent(t *testing.T, since time.Time, least time.Duration, what string) {
	t.Helper()
	waitFor(t, readyTimeout, what, func() error {
		if n := l.sent(since); n < loadPhase || time.Since(since) < least {
			return fmt.Errorf("%d requests in %v", n, time.Since(since).Round(time.Millisecond))
		}
		return nil
	})
}

// failures are the failed requests that started in [from, to).
func (l *load) failures(from, to time.Time) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, o := range l.outcomes {
		if o.err != nil && !o.start.Before(from) && o.start.Before(to) {
			errs = append(errs, o.err)
		}
	}
	return errs
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

// report logs how many requests the load sent, and fails t for each
// request that failed in [from, to), up to ten.
func (l *load) report(t *testing.T, from, to time.Time, what string) {
	t.Helper()
	l.mu.Lock()
	total := len(l.outcomes)
	l.mu.Unlock()
	errs := l.failures(from, to)
	t.Logf("%d requests through %s, %d failed %s", total, l.lb, len(errs), what)
	for i, err := range errs {
		if i == 10 {
			t.Errorf("... and %d more", len(errs)-i)
			break
		}
		t.Errorf("failed %s: %v", what, err)
	}
}

// testOutage runs the load through lb, takes service's node out with
// takeOut and brings it back with bringBack. Requests sent before HAProxy's
// health check notices the node is out may fail (retries should save most;
// those that fail are logged); every request sent after that must succeed.
// Behind nginx, which has no active health check, every request sent after
// takeOut must. The returned node must come to hold every write it missed,
// and every acknowledged write must be readable at the end.
func (s *stack) testOutage(t *testing.T, lb, service string, takeOut, bringBack func(*testing.T, string)) {
	s.waitWhole(t)
	l := s.startLoad(t, lb, strings.ReplaceAll(t.Name(), "/", "."))
	l.waitSent(t, time.Now(), 0, "the load running")

	out := time.Now()
	takeOut(t, service)
	noticed, since := out, "after "+service+" was taken out"
	if lb == s.haproxy {
		since = "after HAProxy noticed"
		s.waitServerState(t, readyTimeout, service, "DOWN")
		noticed = time.Now()
		t.Logf("HAProxy marked %s down %v after it was taken out", service, noticed.Sub(out).Round(time.Millisecond))
	}
	l.waitSent(t, noticed, minOutage, "the load running while "+service+" is out")

	back := time.Now()
	bringBack(t, service)
	s.waitWhole(t)
	t.Logf("%s back in the cluster and HAProxy %v after it was brought back", service, time.Since(back).Round(time.Millisecond))
	l.waitSent(t, time.Now(), 0, "the load running after "+service+" is back")
	l.stop()

	for _, err := range l.failures(out, noticed) {
		t.Logf("failed before HAProxy noticed: %v", err)
	}
	l.report(t, time.Time{}, out, "before "+service+" was taken out")
	l.report(t, noticed, time.Now(), since)

	missed := l.ackedIn(out, back)
	took := s.waitLocal(t, service, missed)
	t.Logf("%s held the %d writes acknowledged while it was out %v after it was brought back",
		service, len(missed), took.Round(time.Millisecond))
	s.checkAcked(t, lb, l.ackedIn(time.Time{}, time.Now()))
}

// testNetworkCut is testOutage with the node's container disconnected from
// the network and connected again, for longer than it takes both sides to
// declare each other dead: the nodes must find each other again by
// themselves (memberlist never probes dead members; the node's reconnect
// loop does). If they do not, the node is restarted so that the tests after
// this one find a whole cluster.
func (s *stack) testNetworkCut(t *testing.T, lb, service string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("restarting %s so that it rejoins", service)
			s.docker(t, "restart", "--time", "10", s.container(t, service))
		}
	})
	cut := func(t *testing.T, service string) {
		s.disconnect(t, service)
		s.waitSeenDead(t, lb, service)
	}
	s.testOutage(t, lb, service, cut, s.connect)
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
// then start again; each back in HAProxy and the cluster before the next),
// under load, and checks that every acknowledged write is still there.
func (s *stack) testRollingRestart(t *testing.T, lb string) {
	s.waitWhole(t)
	l := s.startLoad(t, lb, strings.ReplaceAll(t.Name(), "/", "."))
	began := time.Now()
	l.waitSent(t, began, 0, "the load running")
	for _, service := range []string{"node1", "node2", "node3"} {
		start := time.Now()
		s.docker(t, "restart", "--time", "10", s.container(t, service))
		s.waitWhole(t)
		t.Logf("%s restarted and back in the cluster and HAProxy in %v", service, time.Since(start).Round(time.Millisecond))
	}
	l.waitSent(t, time.Now(), 0, "the load running after the restarts")
	l.stop()
	l.report(t, time.Time{}, time.Now(), "during the rolling restart")
	s.checkAcked(t, lb, l.ackedIn(time.Time{}, time.Now()))
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
	ip := strings.TrimSpace(string(s.dockerOutput(t, "inspect", "--format",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", s.container(t, service))))
	if ip == "" {
		t.Fatalf("%s's container has no address", service)
	}
	return ip + ":8080"
}

// waitWhole waits until HAProxy has every node up and every node sees the
// three alive.
func (s *stack) waitWhole(t *testing.T) {
	t.Helper()
	s.waitServersUp(t, readyTimeout, "node1", "node2", "node3")
	s.waitConverged(t, readyTimeout, s.haproxy, 3)
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
