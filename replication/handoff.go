package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// Hint is a version held for a replica that could not take it: a stand-in
// (or the coordinator) keeps it until the target is reachable.
type Hint struct {
	Target    string
	Partition int
	Key       []byte
	Object    *version.Object
	// Sole marks a hint that may be the only copy of its value: a stand-in
	// minted the write while every replica was down. It is never dropped
	// for its age (see HandoffConfig.Stale), since no replica would hold
	// what it carries.
	Sole bool
	// Seq identifies this state of the hint: a hint rewritten since it was
	// read has another Seq and is not deleted by a delivery of the old one.
	Seq uint64
}

// HintStore keeps hints durably, apart from the node's own data. It is
// bounded; when the bound is hit the oldest hints are dropped (and counted
// by the implementation): anti-entropy repairs what they carried.
// Implementations must be safe for concurrent use.
type HintStore interface {
	// AddHint merges obj into the hint for (target, key), durably; sole
	// marks it (and keeps it marked) as Hint.Sole.
	AddHint(target string, partition int, key []byte, obj *version.Object, sole bool) error
	// Hinted returns the merge of every hint held for key, nil when none.
	Hinted(partition int, key []byte) (*version.Object, error)
	// Targets lists the nodes hints are held for.
	Targets() ([]string, error)
	// Hints pages through target's hints: up to limit after cursor (nil:
	// from the start); next is nil when there are no more.
	Hints(target string, cursor []byte, limit int) (hints []Hint, next []byte, err error)
	// Delivered deletes a hint once its target stored it, unless the hint
	// changed since it was read (its Seq moved on).
	Delivered(h Hint) error
}

// HandoffConfig configures the hinted-handoff loop.
type HandoffConfig struct {
	// Interval between passes over the hints; zero means 250ms.
	Interval time.Duration
	// Batch is how many hints of one target are delivered at a time; zero
	// means 64.
	Batch int
	// Timeout bounds one delivery; zero means 2s.
	Timeout time.Duration
	Logger  *slog.Logger
	// Gone reports whether a target has left the ring for good (it left,
	// or was removed); nil means never.
	Gone func(target string) bool
	// Redeliver hands a hint whose target is gone, or refuses it as no
	// longer a replica of the key, to the key's current replicas instead;
	// required when Gone is set.
	Redeliver func(ctx context.Context, h Hint) error
	// Stale reports a hint that must not land anywhere by until (its value
	// may have been deleted and the delete purged by then). It is asked
	// right before each delivery, with the delivery's deadline; a stale
	// hint is deleted and counted as dropped instead. nil: none is. A Sole
	// hint is never stale.
	Stale func(h Hint, until time.Time) bool
}

// Handoff delivers hints to their targets once they are reachable (paper
// §4.6). A hint is deleted only after its target durably stored it, and the
// target merges it by causality, so a hint never overwrites a newer version
// nor brings back a deleted one.
type Handoff struct {
	cfg       HandoffConfig
	hints     HintStore
	transport Transport
	health    *Health
	pipeline  *Pipeline
	metrics   *Metrics

	wake chan struct{}
}

// NewHandoff builds the loop; Run starts it. pipeline, health and metrics
// may be nil.
func NewHandoff(cfg HandoffConfig, hints HintStore, transport Transport, health *Health, pipeline *Pipeline, metrics *Metrics) *Handoff {
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handoff{cfg: cfg, hints: hints, transport: transport, health: health, pipeline: pipeline, metrics: metrics, wake: make(chan struct{}, 1)}
}

// Wake asks for a pass now (a target came back, say).
func (h *Handoff) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Run delivers hints until ctx is done.
func (h *Handoff) Run(ctx context.Context) {
	ticker := time.NewTicker(h.cfg.Interval)
	defer ticker.Stop()
	for {
		h.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-h.wake:
		}
	}
}

// Pass makes one attempt at every target's hints and returns how many were
// delivered.
func (h *Handoff) Pass(ctx context.Context) int {
	targets, err := h.hints.Targets()
	if err != nil {
		h.cfg.Logger.Error("cannot list hint targets", "err", err)
		return 0
	}
	delivered := 0
	for _, target := range targets {
		if ctx.Err() != nil {
			break
		}
		if h.health.Usable(target) || h.gone(target) {
			delivered += h.drain(ctx, target)
		}
	}
	return delivered
}

// drain delivers target's hints a batch at a time until they are gone or a
// delivery fails (the target is still away; the next pass tries again).
func (h *Handoff) drain(ctx context.Context, target string) int {
	var cursor []byte
	delivered := 0
	for {
		batch, next, err := h.hints.Hints(target, cursor, h.cfg.Batch)
		if err != nil {
			h.cfg.Logger.Error("cannot read hints", "target", target, "err", err)
			return delivered
		}
		ok, failed := h.deliverBatch(ctx, batch)
		delivered += ok
		if failed > 0 || next == nil {
			if delivered > 0 {
				h.cfg.Logger.Info("hints handed off", "target", target, "delivered", delivered, "pending_failures", failed)
			}
			return delivered
		}
		cursor = next
	}
}

// deliverBatch sends a batch through the background pipeline and waits
// for it, so a target gets at most one batch in flight.
func (h *Handoff) deliverBatch(ctx context.Context, batch []Hint) (int, int) {
	var (
		mu         sync.Mutex // guards ok and failed
		ok, failed int
		wg         sync.WaitGroup
	)
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			ok++
		} else {
			failed++
		}
	}
	for _, hint := range batch {
		task := func(ctx context.Context) error {
			defer wg.Done()
			err := h.deliver(ctx, hint)
			record(err)
			return err
		}
		wg.Add(1)
		if h.pipeline == nil {
			tctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
			task(tctx)
			cancel()
			continue
		}
		if err := h.pipeline.SubmitWait(ctx, "handoff", task); err != nil {
			wg.Done()
			record(err)
		}
	}
	// A pipeline closing under us drops queued tasks without running them,
	// so stop waiting once the loop is told to stop.
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	return ok, failed
}

func (h *Handoff) gone(target string) bool { return h.cfg.Gone != nil && h.cfg.Gone(target) }

func (h *Handoff) deliver(ctx context.Context, hint Hint) error {
	if h.cfg.Stale != nil {
		// The hint was read before the delivery waited its turn.
		until, ok := ctx.Deadline()
		if !ok {
			until = time.Now().Add(h.cfg.Timeout)
		}
		if h.cfg.Stale(hint, until) {
			if err := h.hints.Delivered(hint); err != nil {
				return fmt.Errorf("dropping a stale hint: %w", err)
			}
			h.metrics.HintsDropped(1)
			h.cfg.Logger.Warn("dropped a hint too old to deliver safely", "target", hint.Target,
				"partition", hint.Partition, "written", hint.Object.Modified())
			return nil
		}
	}
	var err error
	if h.gone(hint.Target) {
		err = h.cfg.Redeliver(ctx, hint)
	} else {
		start := time.Now()
		_, err = h.transport.Store(ctx, hint.Target, StoreRequest{Partition: hint.Partition, Key: hint.Key, Object: hint.Object})
		h.health.observe(hint.Target, err)
		h.metrics.observeReplica(hint.Target, "handoff", start, err)
		if errors.Is(err, ErrNotReplica) && h.cfg.Redeliver != nil {
			// The target no longer replicates the key (the ring changed
			// while the hint waited): the key's replicas take it instead.
			err = h.cfg.Redeliver(ctx, hint)
		}
	}
	if err != nil {
		return err
	}
	if err := h.hints.Delivered(hint); err != nil {
		return errors.Join(errors.New("delivered, but the hint could not be deleted"), err)
	}
	h.metrics.hintDelivered()
	return nil
}
