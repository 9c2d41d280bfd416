package replication

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrPipelineClosed reports that a Pipeline was closed and takes no more
// tasks.
var ErrPipelineClosed = errors.New("replication: background pipeline closed")

// Admission control (paper §6.5). The allowed task rate is revised once per
// admissionWindow from the mean foreground latency of that window, smoothed
// across windows: above LatencyTarget it is cut multiplicatively, otherwise
// it climbs back additively (AIMD).
const (
	admissionWindow = 100 * time.Millisecond
	// admissionSmoothing is the weight of the newest window's mean in the
	// latency signal: one slow window moves it less than a third of the
	// way, while a sustained slowdown crosses the target within a few
	// windows.
	admissionSmoothing = 0.3
	// admissionBackoff is the factor the rate is multiplied by for each
	// window whose signal is over target.
	admissionBackoff = 0.5
	// admissionRecovery is how many healthy windows it takes to climb from
	// MinRate back to Rate: five seconds, slower than the fall, so the
	// rate settles just under where the foreground starts to suffer.
	admissionRecovery = 50
)

// PipelineConfig configures a Pipeline. Zero (or negative) fields take the
// defaults shown.
type PipelineConfig struct {
	// Workers is how many tasks run at once; default 4.
	Workers int
	// QueueSize is how many tasks may wait to start; default 4096. Beyond
	// it Submit drops.
	QueueSize int
	// Rate is the most task starts per second, allowed while the foreground
	// is healthy; default 1000. Starts are drawn from a token bucket whose
	// burst is a tenth of a second's worth at the current rate (at least 1).
	Rate float64
	// MinRate is the floor the rate backs off to; default 10, and never
	// above Rate.
	MinRate float64
	// LatencyTarget is the foreground latency above which background work
	// backs off; default 50ms. The signal compared with it is an EWMA, over
	// 100ms windows, of each window's mean ObserveForeground sample. A
	// window without samples leaves the signal alone and counts as healthy:
	// an idle foreground has nothing to protect.
	LatencyTarget time.Duration
	// TaskTimeout is the deadline of each task's context; default 5s.
	TaskTimeout time.Duration
	// Now is the clock of the rate limiter and the task durations; nil
	// means time.Now.
	Now func() time.Time
}

func (c PipelineConfig) withDefaults() PipelineConfig {
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 4096
	}
	if c.Rate <= 0 {
		c.Rate = 1000
	}
	if c.MinRate <= 0 {
		c.MinRate = 10
	}
	c.MinRate = min(c.MinRate, c.Rate)
	if c.LatencyTarget <= 0 {
		c.LatencyTarget = 50 * time.Millisecond
	}
	if c.TaskTimeout <= 0 {
		c.TaskTimeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Pipeline runs background work (read repair, hinted handoff) apart from
// client requests. It is safe for concurrent use.
//
// What always holds: Submit never waits for the queue; at most Workers tasks
// run at once and at most QueueSize wait; a task starts only with a token
// from the rate limiter; every task handed to Submit or SubmitWait is
// counted exactly once in dynamo_background_tasks_total, as ok, error or
// dropped (SubmitWait's refusals are not counted: its caller still holds
// the task). Tasks must honour their context: Close waits for them.
type Pipeline struct {
	cfg       PipelineConfig
	admission *admission
	queue     chan pipelineTask

	// ctx is canceled by Close: running tasks see it through their own
	// contexts, and workers and SubmitWait stop waiting.
	ctx       context.Context
	cancel    context.CancelFunc
	workers   sync.WaitGroup
	closeOnce sync.Once

	// mu is held shared by every enqueue and exclusively by Close to set
	// closed, so nothing enters the queue after Close drains it.
	mu     sync.RWMutex
	closed bool

	tasks     *prometheus.CounterVec
	durations *prometheus.HistogramVec
}

type pipelineTask struct {
	kind string
	run  func(ctx context.Context) error
}

// NewPipeline starts a pipeline's workers; Close stops them. Its collectors
// are registered on reg unless reg is nil.
func NewPipeline(cfg PipelineConfig, reg prometheus.Registerer) *Pipeline {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pipeline{
		cfg:       cfg,
		admission: newAdmission(cfg, cfg.Now()),
		queue:     make(chan pipelineTask, cfg.QueueSize),
		ctx:       ctx,
		cancel:    cancel,
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_background_tasks_total",
			Help: "Background tasks by kind and outcome (ok, error, dropped: refused by a full queue or discarded by shutdown).",
		}, []string{"kind", "outcome"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dynamo_background_task_duration_seconds",
			Help:    "How long background tasks ran, by kind.",
			Buckets: prometheus.DefBuckets,
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(p.tasks, p.durations,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "dynamo_background_queue_length",
				Help: "Background tasks waiting for a worker.",
			}, func() float64 { return float64(len(p.queue)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "dynamo_background_rate",
				Help: "Background task starts per second currently allowed by admission control.",
			}, p.Rate),
		)
	}
	for range cfg.Workers {
		p.workers.Go(p.work)
	}
	return p
}

// Submit enqueues a task without ever waiting for room. It returns false,
// and counts the task dropped, when the queue is full or the pipeline is
// closed. kind labels the metrics ("read_repair", "handoff", ...).
func (p *Pipeline) Submit(kind string, task func(ctx context.Context) error) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed {
		select {
		case p.queue <- pipelineTask{kind: kind, run: task}:
			return true
		default:
		}
	}
	p.dropped(kind)
	return false
}

// SubmitWait enqueues a task, waiting for room until ctx is done or the
// pipeline closes. It is for background producers such as the handoff loop,
// never for client requests. It returns ctx.Err() or ErrPipelineClosed when
// the task was not taken; such refusals are not counted as drops.
func (p *Pipeline) SubmitWait(ctx context.Context, kind string, task func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Holding mu shared while waiting is safe: Close cancels p.ctx before
	// it asks for mu exclusively, which ends this wait.
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPipelineClosed
	}
	select {
	case p.queue <- pipelineTask{kind: kind, run: task}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.ctx.Done():
		return ErrPipelineClosed
	}
}

// ObserveForeground feeds the latency of one client request to admission
// control. It is lock-free except once per 100ms window, when the first
// caller after the window ended revises the rate.
func (p *Pipeline) ObserveForeground(d time.Duration) {
	p.admission.observe(d, p.cfg.Now())
}

// Rate returns the task starts per second admission control allows now,
// between MinRate and Rate.
func (p *Pipeline) Rate() float64 {
	return p.admission.rateAt(p.cfg.Now())
}

// Close stops taking tasks, cancels the running tasks' contexts, waits for
// the workers to exit and drops (counting) what was still queued. It is
// safe to call more than once.
func (p *Pipeline) Close() {
	p.closeOnce.Do(func() {
		p.cancel()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		p.workers.Wait()
		for {
			select {
			case t := <-p.queue:
				p.dropped(t.kind)
			default:
				return
			}
		}
	})
}

func (p *Pipeline) work() {
	for {
		select {
		case <-p.ctx.Done():
			return
		case t := <-p.queue:
			if !p.awaitToken() {
				p.dropped(t.kind)
				return
			}
			p.run(t)
		}
	}
}

// awaitToken waits until the rate limiter lets a task start; false means
// the pipeline closed first.
func (p *Pipeline) awaitToken() bool {
	for p.ctx.Err() == nil {
		wait := p.admission.take(p.cfg.Now())
		if wait == 0 {
			return true
		}
		timer := time.NewTimer(wait)
		select {
		case <-p.ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
	}
	return false
}

func (p *Pipeline) run(t pipelineTask) {
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.TaskTimeout)
	defer cancel()
	start := p.cfg.Now()
	err := t.run(ctx)
	p.durations.WithLabelValues(t.kind).Observe(p.cfg.Now().Sub(start).Seconds())
	taskOutcome := "ok"
	if err != nil {
		taskOutcome = "error"
	}
	p.tasks.WithLabelValues(t.kind, taskOutcome).Inc()
}

func (p *Pipeline) dropped(kind string) {
	p.tasks.WithLabelValues(kind, "dropped").Inc()
}

// admission is the pipeline's AIMD rate controller and the token bucket
// that enforces its rate. Times are offsets from epoch, so a clock read
// keeps its monotonic reading.
type admission struct {
	maxRate, minRate float64
	step             float64 // additive increase per healthy window
	target           float64 // LatencyTarget, in nanoseconds
	epoch            time.Time

	// The current window's samples, added without the lock. A sample that
	// races with the window's end may land half in each window; the signal
	// is a smoothed mean, so that is harmless.
	windowSum   atomic.Int64 // nanoseconds
	windowCount atomic.Int64
	windowEnd   atomic.Int64 // nanoseconds after epoch; mirrors windowStart+admissionWindow

	mu          sync.Mutex // guards the fields below
	windowStart time.Duration
	signal      float64 // smoothed mean latency in nanoseconds; negative before any sample
	rate        float64
	tokens      float64
	refilled    time.Duration // when tokens were last brought up to date
}

func newAdmission(cfg PipelineConfig, now time.Time) *admission {
	a := &admission{
		maxRate: cfg.Rate,
		minRate: cfg.MinRate,
		step:    (cfg.Rate - cfg.MinRate) / admissionRecovery,
		target:  float64(cfg.LatencyTarget),
		epoch:   now,
		signal:  -1,
		rate:    cfg.Rate,
	}
	a.tokens = a.burst()
	a.windowEnd.Store(int64(admissionWindow))
	return a
}

func (a *admission) observe(d time.Duration, now time.Time) {
	at := now.Sub(a.epoch)
	// Close the windows that ended before adding, so a sample is counted in
	// the window it arrived in.
	if int64(at) >= a.windowEnd.Load() {
		a.mu.Lock()
		a.advance(at)
		a.mu.Unlock()
	}
	a.windowSum.Add(int64(max(d, 0)))
	a.windowCount.Add(1)
}

func (a *admission) rateAt(now time.Time) float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.advance(now.Sub(a.epoch))
	return a.rate
}

// take takes a token if one is available and returns 0; otherwise it
// returns how long to wait before asking again (at most one window, so a
// rate revised meanwhile takes effect).
func (a *admission) take(now time.Time) time.Duration {
	at := now.Sub(a.epoch)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.advance(at)
	a.refill(at)
	if a.tokens >= 1 {
		a.tokens--
		return 0
	}
	wait := time.Duration(math.Ceil((1 - a.tokens) / a.rate * float64(time.Second)))
	return min(max(wait, 1), admissionWindow)
}

// advance closes every window that ended by at and revises the rate once
// per closed window. a.mu must be held.
func (a *admission) advance(at time.Duration) {
	ended := (at - a.windowStart) / admissionWindow
	if ended < 1 {
		return
	}
	// Tokens earned so far accrue at the rate that was in force.
	a.refill(at)
	count, sum := a.windowCount.Swap(0), a.windowSum.Swap(0)
	// Samples belong to the first closed window (observe closes windows
	// before it adds); any later ones were idle.
	healthy := true
	if count > 0 {
		mean := float64(sum) / float64(count)
		if a.signal < 0 {
			a.signal = mean
		} else {
			a.signal += admissionSmoothing * (mean - a.signal)
		}
		healthy = a.signal <= a.target
	}
	if healthy {
		a.rate += a.step
	} else {
		a.rate = max(a.minRate, a.rate*admissionBackoff)
	}
	a.rate = min(a.maxRate, a.rate+float64(ended-1)*a.step)
	a.windowStart += ended * admissionWindow
	a.windowEnd.Store(int64(a.windowStart + admissionWindow))
}

// refill brings the bucket up to at. a.mu must be held.
func (a *admission) refill(at time.Duration) {
	if at > a.refilled {
		a.tokens += (at - a.refilled).Seconds() * a.rate
		a.refilled = at
	}
	a.tokens = min(a.tokens, a.burst())
}

func (a *admission) burst() float64 {
	return max(1, a.rate/10)
}
