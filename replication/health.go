package replication

import (
	"sync"
	"time"
)

// HealthConfig configures a Health view.
type HealthConfig struct {
	// Down reports whether membership currently suspects id or considers it
	// dead; nil means membership never does.
	Down func(id string) bool
	// MinBackoff is how long a node is skipped after its first failed
	// request; each further failure doubles it up to MaxBackoff. Zeros mean
	// 200ms and 2s: short, so a recovered node is used again within seconds.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Health is a coordinator's local view of which nodes to send requests to,
// as in the paper (§4.8): a node is skipped while membership marks it
// suspect or dead, and for a short, growing back-off after a request to it
// failed. The back-off expiring is the probe: the next request tries the
// node again, so recovery is noticed without a restart. Safe for
// concurrent use.
type Health struct {
	cfg HealthConfig

	mu       sync.Mutex // guards failures
	failures map[string]backoff
}

type backoff struct {
	until time.Time
	delay time.Duration
}

// NewHealth returns a view in which every node is usable.
func NewHealth(cfg HealthConfig) *Health {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(2*time.Second, cfg.MinBackoff)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Health{cfg: cfg, failures: map[string]backoff{}}
}

// Usable reports whether a request should be sent to id now.
func (h *Health) Usable(id string) bool {
	if h == nil {
		return true
	}
	if h.cfg.Down != nil && h.cfg.Down(id) {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.failures[id]
	return !ok || !h.cfg.Now().Before(b.until)
}

// Reachable reports whether membership believes id is up, whatever its
// back-off: such a node is worth trying when nothing better is left.
func (h *Health) Reachable(id string) bool {
	return h == nil || h.cfg.Down == nil || !h.cfg.Down(id)
}

// Failed records a failed request to id: it is skipped for the back-off.
func (h *Health) Failed(id string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.failures[id]
	switch {
	case !ok:
		b.delay = h.cfg.MinBackoff
	case h.cfg.Now().Before(b.until):
		return // a failure from before the back-off began: already counted
	default:
		b.delay = min(2*b.delay, h.cfg.MaxBackoff)
	}
	b.until = h.cfg.Now().Add(b.delay)
	h.failures[id] = b
}

// Succeeded records a request to id that worked: its back-off is cleared.
func (h *Health) Succeeded(id string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.failures, id)
}

// observe records the outcome of one request to id.
func (h *Health) observe(id string, err error) {
	if err == nil {
		h.Succeeded(id)
	} else if failureOfNode(err) {
		h.Failed(id)
	}
}

// failureOfNode tells errors that say the node is unhealthy (unreachable,
// timed out, failed internally) from answers it gave on purpose, such as a
// coordinator's quorum failure, which says nothing about the node itself.
func failureOfNode(err error) bool {
	return !isAnswer(err)
}
