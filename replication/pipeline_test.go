package replication

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// pipelineClock is a clock that moves only when told to.
type pipelineClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newPipelineClock() *pipelineClock {
	return &pipelineClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *pipelineClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *pipelineClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// pipelineEventually polls cond until it holds, failing after 5s.
func pipelineEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// pipelineReceive waits for a value on ch, failing after 5s.
func pipelineReceive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// pipelineMetric returns the metric of family name whose labels include
// labels, nil when there is none.
func pipelineMetric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return m
		}
	}
	return nil
}

func pipelineTasks(t *testing.T, reg *prometheus.Registry, kind, outcome string) float64 {
	t.Helper()
	return pipelineMetric(t, reg, "dynamo_background_tasks_total", map[string]string{"kind": kind, "outcome": outcome}).GetCounter().GetValue()
}

func pipelineGauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	m := pipelineMetric(t, reg, name, nil)
	if m == nil {
		t.Fatalf("no %s", name)
	}
	return m.GetGauge().GetValue()
}

// blockWorker occupies one worker until release is closed; it returns once
// the task is running.
func blockWorker(t *testing.T, p *Pipeline, release <-chan struct{}) {
	t.Helper()
	running := make(chan struct{})
	if !p.Submit("block", func(context.Context) error {
		close(running)
		<-release
		return nil
	}) {
		t.Fatal("Submit of the blocking task refused")
	}
	pipelineReceive(t, "the blocking task to start", running)
}

func nop(context.Context) error { return nil }

func TestPipelineRunsTasksAndCountsOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPipeline(PipelineConfig{}, reg)
	defer p.Close()

	var ran atomic.Int32
	for range 5 {
		if !p.Submit("read_repair", func(context.Context) error { ran.Add(1); return nil }) {
			t.Fatal("Submit refused with an empty queue")
		}
	}
	for range 3 {
		if err := p.SubmitWait(context.Background(), "handoff", func(context.Context) error {
			ran.Add(1)
			return errors.New("target down")
		}); err != nil {
			t.Fatal(err)
		}
	}
	pipelineEventually(t, "8 outcomes", func() bool {
		return pipelineTasks(t, reg, "read_repair", "ok")+pipelineTasks(t, reg, "handoff", "error") == 8
	})
	if got := ran.Load(); got != 8 {
		t.Fatalf("%d tasks ran, want 8", got)
	}
	if got := pipelineTasks(t, reg, "read_repair", "ok"); got != 5 {
		t.Fatalf("read_repair ok = %v, want 5", got)
	}
	if got := pipelineTasks(t, reg, "handoff", "error"); got != 3 {
		t.Fatalf("handoff error = %v, want 3", got)
	}
	for kind, want := range map[string]uint64{"read_repair": 5, "handoff": 3} {
		m := pipelineMetric(t, reg, "dynamo_background_task_duration_seconds", map[string]string{"kind": kind})
		if got := m.GetHistogram().GetSampleCount(); got != want {
			t.Fatalf("%s durations observed %d times, want %d", kind, got, want)
		}
	}
	if got := pipelineGauge(t, reg, "dynamo_background_queue_length"); got != 0 {
		t.Fatalf("queue length %v, want 0", got)
	}
	if got := pipelineGauge(t, reg, "dynamo_background_rate"); got != 1000 {
		t.Fatalf("rate gauge %v, want the default 1000", got)
	}
}

func TestPipelineWithoutRegistry(t *testing.T) {
	p := NewPipeline(PipelineConfig{}, nil)
	defer p.Close()
	done := make(chan struct{})
	p.Submit("read_repair", func(context.Context) error { close(done); return nil })
	pipelineReceive(t, "the task", done)
}

func TestPipelineSubmitDropsWhenFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPipeline(PipelineConfig{Workers: 1, QueueSize: 2}, reg)
	defer p.Close()
	release := make(chan struct{})
	defer close(release)
	blockWorker(t, p, release)

	for i := range 2 {
		if !p.Submit("read_repair", nop) {
			t.Fatalf("Submit %d refused with room in the queue", i)
		}
	}
	refused := make(chan bool)
	go func() { refused <- !p.Submit("read_repair", nop) }()
	if !pipelineReceive(t, "Submit on a full queue to return", refused) {
		t.Fatal("Submit on a full queue returned true")
	}
	if got := pipelineTasks(t, reg, "read_repair", "dropped"); got != 1 {
		t.Fatalf("dropped = %v, want 1", got)
	}
	if got := pipelineGauge(t, reg, "dynamo_background_queue_length"); got != 2 {
		t.Fatalf("queue length %v, want 2", got)
	}
}

func TestPipelineConcurrencyBoundedByWorkers(t *testing.T) {
	const workers, tasks = 3, 12
	p := NewPipeline(PipelineConfig{Workers: workers}, nil)
	defer p.Close()

	var running, most atomic.Int32
	started := make(chan struct{}, tasks)
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(tasks)
	for range tasks {
		p.Submit("read_repair", func(context.Context) error {
			defer done.Done()
			n := running.Add(1)
			defer running.Add(-1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			started <- struct{}{}
			<-release
			return nil
		})
	}
	for range workers {
		pipelineReceive(t, "a task to start", started)
	}
	close(release)
	done.Wait()
	if got := most.Load(); got != workers {
		t.Fatalf("at most %d tasks ran at once, want exactly %d", got, workers)
	}
}

func TestPipelineSubmitWaitWaitsForRoom(t *testing.T) {
	p := NewPipeline(PipelineConfig{Workers: 1, QueueSize: 1}, nil)
	defer p.Close()
	release := make(chan struct{})
	blockWorker(t, p, release)
	if !p.Submit("handoff", nop) {
		t.Fatal("Submit refused with room in the queue")
	}

	ran := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- p.SubmitWait(context.Background(), "handoff", func(context.Context) error { close(ran); return nil })
	}()
	// The queue stays full while the worker is blocked, so SubmitWait is
	// still waiting.
	if p.Submit("handoff", nop) {
		t.Fatal("Submit took a task into a full queue")
	}
	select {
	case err := <-result:
		t.Fatalf("SubmitWait returned %v while the queue was full", err)
	default:
	}
	close(release)
	if err := pipelineReceive(t, "SubmitWait to return", result); err != nil {
		t.Fatalf("SubmitWait: %v", err)
	}
	pipelineReceive(t, "the waited-for task to run", ran)
}

func TestPipelineSubmitWaitHonoursContext(t *testing.T) {
	p := NewPipeline(PipelineConfig{Workers: 1, QueueSize: 1}, nil)
	defer p.Close()

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.SubmitWait(canceled, "handoff", nop); !errors.Is(err, context.Canceled) {
		t.Fatalf("SubmitWait with a canceled context and room: %v, want context.Canceled", err)
	}

	release := make(chan struct{})
	defer close(release)
	blockWorker(t, p, release)
	p.Submit("handoff", nop)

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- p.SubmitWait(ctx, "handoff", nop) }()
	cancel()
	if err := pipelineReceive(t, "SubmitWait to return", result); !errors.Is(err, context.Canceled) {
		t.Fatalf("SubmitWait after cancel: %v, want context.Canceled", err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := p.SubmitWait(ctx, "handoff", nop); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SubmitWait past its deadline: %v, want context.DeadlineExceeded", err)
	}
}

func TestPipelineCloseCancelsRunningTasks(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPipeline(PipelineConfig{Workers: 2, QueueSize: 3}, reg)

	running := make(chan struct{}, 2)
	var finished atomic.Int32
	causes := make(chan error, 2)
	for range 2 {
		p.Submit("handoff", func(ctx context.Context) error {
			running <- struct{}{}
			<-ctx.Done()
			causes <- ctx.Err()
			finished.Add(1)
			return ctx.Err()
		})
	}
	pipelineReceive(t, "a task to start", running)
	pipelineReceive(t, "a task to start", running)
	var queuedRan atomic.Int32
	for range 3 {
		if !p.Submit("read_repair", func(context.Context) error { queuedRan.Add(1); return nil }) {
			t.Fatal("Submit refused with room in the queue")
		}
	}

	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	pipelineReceive(t, "Close to return", closed)

	if got := finished.Load(); got != 2 {
		t.Fatalf("Close returned with %d of 2 running tasks finished", 2-got)
	}
	for range 2 {
		if err := <-causes; !errors.Is(err, context.Canceled) {
			t.Fatalf("a running task's context ended with %v, want context.Canceled", err)
		}
	}
	if got := queuedRan.Load(); got != 0 {
		t.Fatalf("%d queued tasks ran after Close", got)
	}
	if got := pipelineTasks(t, reg, "handoff", "error"); got != 2 {
		t.Fatalf("handoff error = %v, want 2", got)
	}
	if got := pipelineTasks(t, reg, "read_repair", "dropped"); got != 3 {
		t.Fatalf("read_repair dropped = %v, want the 3 queued", got)
	}
	if got := pipelineGauge(t, reg, "dynamo_background_queue_length"); got != 0 {
		t.Fatalf("queue length after Close %v, want 0", got)
	}

	if p.Submit("read_repair", nop) {
		t.Fatal("Submit after Close returned true")
	}
	if got := pipelineTasks(t, reg, "read_repair", "dropped"); got != 4 {
		t.Fatalf("read_repair dropped = %v, want 4", got)
	}
	if err := p.SubmitWait(context.Background(), "handoff", nop); !errors.Is(err, ErrPipelineClosed) {
		t.Fatalf("SubmitWait after Close: %v, want ErrPipelineClosed", err)
	}
	p.Close()
}

func TestPipelineCloseReleasesSubmitWait(t *testing.T) {
	p := NewPipeline(PipelineConfig{Workers: 1, QueueSize: 1}, nil)
	// The blocking task ignores its context, so the queue stays full
	// while Close waits for it.
	release := make(chan struct{})
	blockWorker(t, p, release)
	p.Submit("handoff", nop)

	result := make(chan error, 1)
	go func() { result <- p.SubmitWait(context.Background(), "handoff", nop) }()
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()

	if err := pipelineReceive(t, "SubmitWait to return", result); !errors.Is(err, ErrPipelineClosed) {
		t.Fatalf("SubmitWait during Close: %v, want ErrPipelineClosed", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a task was still running")
	default:
	}
	close(release)
	pipelineReceive(t, "Close to return", closed)
}

func TestPipelineTaskTimeout(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPipeline(PipelineConfig{TaskTimeout: time.Millisecond}, reg)
	defer p.Close()
	cause := make(chan error, 1)
	p.Submit("handoff", func(ctx context.Context) error {
		<-ctx.Done()
		cause <- ctx.Err()
		return ctx.Err()
	})
	if err := pipelineReceive(t, "the task's deadline", cause); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("task context ended with %v, want context.DeadlineExceeded", err)
	}
	pipelineEventually(t, "the error to be counted", func() bool { return pipelineTasks(t, reg, "handoff", "error") == 1 })
}

func TestPipelineConfigDefaults(t *testing.T) {
	got := PipelineConfig{Workers: -1, MinRate: 5000}.withDefaults()
	if got.Workers != 4 || got.QueueSize != 4096 || got.Rate != 1000 || got.LatencyTarget != 50*time.Millisecond ||
		got.TaskTimeout != 5*time.Second || got.Now == nil {
		t.Fatalf("defaults not applied: %+v", got)
	}
	if got.MinRate != 1000 {
		t.Fatalf("MinRate %v above Rate %v", got.MinRate, got.Rate)
	}
}

func TestAdmissionBacksOffAndRecovers(t *testing.T) {
	clock := newPipelineClock()
	p := NewPipeline(PipelineConfig{Rate: 1000, MinRate: 10, LatencyTarget: 50 * time.Millisecond, Now: clock.Now}, nil)
	defer p.Close()
	if got := p.Rate(); got != 1000 {
		t.Fatalf("initial rate %v, want 1000", got)
	}

	// Slow foreground: each window halves the rate until the floor.
	prev := p.Rate()
	for i := 0; prev > 10; i++ {
		if i == 20 {
			t.Fatalf("rate still %v after 20 slow windows", prev)
		}
		for range 10 {
			p.ObserveForeground(200 * time.Millisecond)
		}
		clock.Advance(admissionWindow)
		got := p.Rate()
		if want := max(10, prev*admissionBackoff); got != want {
			t.Fatalf("window %d: rate %v after %v, want %v", i, got, prev, want)
		}
		prev = got
	}
	for range 3 {
		p.ObserveForeground(time.Second)
		clock.Advance(admissionWindow)
		if got := p.Rate(); got != 10 {
			t.Fatalf("rate %v below a slow foreground, want the floor 10", got)
		}
	}

	// Fast foreground: the rate climbs back, never falling, never past Rate.
	for i := 0; prev < 1000; i++ {
		if i == 100 {
			t.Fatalf("rate only back to %v after 100 fast windows", prev)
		}
		p.ObserveForeground(time.Millisecond)
		clock.Advance(admissionWindow)
		got := p.Rate()
		if got < prev || got > 1000 {
			t.Fatalf("window %d: rate went from %v to %v while recovering", i, prev, got)
		}
		if got > prev && got-prev > (1000.0-10)/admissionRecovery+1e-9 {
			t.Fatalf("window %d: rate jumped from %v to %v, want additive steps", i, prev, got)
		}
		prev = got
	}
	p.ObserveForeground(time.Millisecond)
	clock.Advance(admissionWindow)
	if got := p.Rate(); got != 1000 {
		t.Fatalf("rate %v after recovery, want 1000", got)
	}
}

func TestAdmissionRevisesOncePerWindow(t *testing.T) {
	clock := newPipelineClock()
	p := NewPipeline(PipelineConfig{Now: clock.Now}, nil)
	defer p.Close()
	for range 100 {
		p.ObserveForeground(time.Second)
	}
	clock.Advance(admissionWindow - 1)
	if got := p.Rate(); got != 1000 {
		t.Fatalf("rate %v before the window ended, want 1000", got)
	}
	clock.Advance(1)
	if got := p.Rate(); got != 500 {
		t.Fatalf("rate %v after one slow window, want 500", got)
	}
}

func TestAdmissionIdleForegroundRecovers(t *testing.T) {
	clock := newPipelineClock()
	p := NewPipeline(PipelineConfig{Rate: 1000, MinRate: 10, Now: clock.Now}, nil)
	defer p.Close()
	for range 10 {
		p.ObserveForeground(time.Second)
		clock.Advance(admissionWindow)
	}
	if got := p.Rate(); got != 10 {
		t.Fatalf("rate %v after slow windows, want 10", got)
	}
	// No client requests at all: every empty window counts as healthy.
	clock.Advance(admissionWindow)
	step := (1000.0 - 10) / admissionRecovery
	if got := p.Rate(); got != 10+step {
		t.Fatalf("rate %v after one idle window, want %v", got, 10+step)
	}
	clock.Advance(time.Minute)
	if got := p.Rate(); got != 1000 {
		t.Fatalf("rate %v after an idle minute, want 1000", got)
	}
}

func TestAdmissionTokenBucket(t *testing.T) {
	t0 := newPipelineClock().Now()
	near := func(got, want time.Duration) bool { return got >= want && got <= want+time.Microsecond }

	// 10/s: a burst of 1, then one token per 100ms.
	a := newAdmission(PipelineConfig{Rate: 10, MinRate: 10}.withDefaults(), t0)
	if w := a.take(t0); w != 0 {
		t.Fatalf("first take waits %v, want the burst token", w)
	}
	if w := a.take(t0); !near(w, 100*time.Millisecond) {
		t.Fatalf("second take waits %v, want 100ms", w)
	}
	if w := a.take(t0.Add(40 * time.Millisecond)); !near(w, 60*time.Millisecond) {
		t.Fatalf("take 40ms later waits %v, want 60ms", w)
	}
	if w := a.take(t0.Add(100 * time.Millisecond)); w != 0 {
		t.Fatalf("take 100ms later waits %v, want a token", w)
	}

	// 100/s: a burst of 10, and the bucket holds no more however long idle.
	a = newAdmission(PipelineConfig{Rate: 100, MinRate: 100}.withDefaults(), t0)
	for _, idle := range []time.Duration{0, time.Hour} {
		now := t0.Add(idle)
		for i := range 10 {
			if w := a.take(now); w != 0 {
				t.Fatalf("take %d of the burst waits %v", i, w)
			}
		}
		if w := a.take(now); !near(w, 10*time.Millisecond) {
			t.Fatalf("take past the burst waits %v, want 10ms", w)
		}
	}
}

func TestPipelineRateLimitsStartsOnFakeClock(t *testing.T) {
	clock := newPipelineClock()
	p := NewPipeline(PipelineConfig{Workers: 2, Rate: 10, MinRate: 10, Now: clock.Now}, nil)
	defer p.Close()
	var started atomic.Int32
	for range 3 {
		p.Submit("handoff", func(context.Context) error { started.Add(1); return nil })
	}
	pipelineEventually(t, "the burst token's task", func() bool { return started.Load() >= 1 })
	// The clock is frozen, so no other token can have been earned.
	if got := started.Load(); got != 1 {
		t.Fatalf("%d tasks started on one token", got)
	}
	clock.Advance(100 * time.Millisecond)
	pipelineEventually(t, "the second task", func() bool { return started.Load() >= 2 })
	if got := started.Load(); got != 2 {
		t.Fatalf("%d tasks started on two tokens", got)
	}
	clock.Advance(100 * time.Millisecond)
	pipelineEventually(t, "the third task", func() bool { return started.Load() == 3 })
}

func TestPipelineRateLimitsStarts(t *testing.T) {
	const rate, burst, tasks = 100, 10, 30
	begin := time.Now()
	p := NewPipeline(PipelineConfig{Rate: rate, MinRate: rate}, nil)
	defer p.Close()
	var (
		mu   sync.Mutex // guards last
		last time.Time
		done sync.WaitGroup
	)
	done.Add(tasks)
	for range tasks {
		p.Submit("handoff", func(context.Context) error {
			defer done.Done()
			mu.Lock()
			defer mu.Unlock()
			if now := time.Now(); now.After(last) {
				last = now
			}
			return nil
		})
	}
	done.Wait()
	want := time.Duration(tasks-burst) * time.Second / rate
	if got := last.Sub(begin); got < want-time.Millisecond {
		t.Fatalf("%d tasks at %d/s with a burst of %d started within %v, want at least %v", tasks, rate, burst, got, want)
	}
}

// TestPipelineConcurrentUse checks the accounting under -race: every
// submitted task ends up counted exactly once.
func TestPipelineConcurrentUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPipeline(PipelineConfig{Workers: 4, QueueSize: 8}, reg)
	const producers, each = 8, 50
	var (
		accepted atomic.Int64
		wg       sync.WaitGroup
	)
	for i := range producers {
		wg.Go(func() {
			for range each {
				p.ObserveForeground(time.Duration(i) * time.Millisecond)
				_ = p.Rate()
				if i%2 == 0 {
					if p.Submit("read_repair", nop) {
						accepted.Add(1)
					}
				} else if p.SubmitWait(context.Background(), "read_repair", nop) == nil {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	pipelineEventually(t, "the accepted tasks to run", func() bool {
		return pipelineTasks(t, reg, "read_repair", "ok") == float64(accepted.Load())
	})
	p.Close()
	// SubmitWait never gave up here, so every call is an ok or a drop.
	ok, dropped := pipelineTasks(t, reg, "read_repair", "ok"), pipelineTasks(t, reg, "read_repair", "dropped")
	if ok != float64(accepted.Load()) || ok+dropped != producers*each {
		t.Fatalf("ok %v + dropped %v for %d accepted of %d, want each task counted once", ok, dropped, accepted.Load(), producers*each)
	}
}
