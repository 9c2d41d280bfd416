package node

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
)

const (
	// siblingLogWindow and siblingLogLines rate-limit the sibling log
	// lines: a key at most once per window for each reason, and at most
	// siblingLogLines lines per window in all. The counters count
	// everything; the log only has to point at the keys.
	siblingLogWindow = time.Minute
	siblingLogLines  = 10
	// siblingLogKeyBytes is how much of a key a log line quotes.
	siblingLogKeyBytes = 128
)

// siblingWatch counts and logs the keys whose reads or writes, coordinated
// by this node, found or left more than SiblingWarn siblings, and the
// writes refused at MaxSiblings: the signs of a client that writes without
// a context and never resolves (Riak's "sibling explosion"). Safe for
// concurrent use.
type siblingWatch struct {
	warn     int
	max      int
	logger   *slog.Logger
	now      func() time.Time
	warnings *prometheus.CounterVec
	refusals prometheus.Counter

	mu      sync.Mutex // guards the fields below
	window  time.Time  // when the current log window ends
	logged  map[siblingLogEntry]struct{}
	skipped int // occurrences not logged since the last line
}

// siblingLogEntry is what the log window remembers: a key, for a reason.
type siblingLogEntry struct {
	refused bool
	key     string
}

func newSiblingWatch(cfg Config, logger *slog.Logger, reg prometheus.Registerer) *siblingWatch {
	w := &siblingWatch{
		warn:   cfg.SiblingWarn,
		max:    cfg.MaxSiblings,
		logger: logger,
		now:    cfg.Now,
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dynamo_sibling_warnings_total",
			Help: "Reads and writes this node coordinated that found or left a key with more siblings than --sibling-warn, by op (get, put); each was answered with a Warning header.",
		}, []string{"op"}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dynamo_sibling_refusals_total",
			Help: "Writes this node refused (409 too_many_siblings) because they would have left a key with more siblings than --max-siblings.",
		}),
		logged: map[siblingLogEntry]struct{}{},
	}
	for _, op := range []string{"get", "put"} {
		w.warnings.WithLabelValues(op) // a series from the start, at 0
	}
	reg.MustRegister(w.warnings, w.refusals)
	return w
}

// read observes a coordinated read's answer.
func (w *siblingWatch) read(key []byte, obj *version.Object, err error) {
	if err == nil && obj != nil {
		w.observe("get", key, len(obj.Siblings), nil)
	}
}

// observe records what a coordinated read or write of key found or left:
// siblings live siblings, or err.
func (w *siblingWatch) observe(op string, key []byte, siblings int, err error) {
	switch {
	case errors.Is(err, replication.ErrTooManySiblings):
		w.refusals.Inc()
		w.log(siblingLogEntry{refused: true, key: string(key)},
			"refused a write that would leave a key with more siblings than --max-siblings; its clients must read it and write back a resolved value with the read's X-Context",
			"max_siblings", w.max)
	case err == nil && siblings > w.warn:
		w.warnings.WithLabelValues(op).Inc()
		w.log(siblingLogEntry{key: string(key)},
			"a key has more siblings than --sibling-warn; its clients write without a context and do not resolve",
			"op", op, "siblings", siblings, "sibling_warn", w.warn, "max_siblings", w.max)
	}
}

// log writes one warning line for e, unless e was logged in this window or
// the window's lines are spent.
func (w *siblingWatch) log(e siblingLogEntry, msg string, attrs ...any) {
	w.mu.Lock()
	if now := w.now(); !now.Before(w.window) {
		w.window = now.Add(siblingLogWindow)
		clear(w.logged)
	}
	if _, done := w.logged[e]; done || len(w.logged) >= siblingLogLines {
		w.skipped++
		w.mu.Unlock()
		return
	}
	w.logged[e] = struct{}{}
	skipped := w.skipped
	w.skipped = 0
	w.mu.Unlock()
	key := e.key
	if len(key) > siblingLogKeyBytes {
		key = key[:siblingLogKeyBytes] + "..."
	}
	attrs = append([]any{"key", key}, attrs...)
	w.logger.Warn(msg, append(attrs, "not_logged_since_last_line", skipped)...)
}
