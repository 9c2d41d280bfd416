package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Option configures a Client; pass any number to New.
type Option func(*config)

// config is what the options set. Every field is read-only once New returns.
type config struct {
	// httpClient sends every request; nil builds one with a transport that
	// keeps enough idle connections per node for a busy client.
	httpClient *http.Client
	// routing sends each request to a replica of its key; off, requests go
	// round robin over the addresses given to New, as behind a load balancer.
	routing bool
	// ringRefresh is the age after which a request refreshes the ring in
	// the background.
	ringRefresh time.Duration
	// attempts bounds the tries of one request, the first included.
	attempts int
	// backoff is the wait before the first retry; each retry doubles it,
	// up to maxBackoff.
	backoff, maxBackoff time.Duration
	// attemptTimeout bounds one attempt, answer body included, so a hung
	// node is given up for the next one; 0 leaves only the caller's context.
	attemptTimeout time.Duration
	// now is the clock of ring ages and failure marks; tests replace it.
	now func() time.Time
}

func defaultConfig() config {
	return config{
		routing:        true,
		ringRefresh:    5 * time.Second,
		attempts:       4,
		backoff:        10 * time.Millisecond,
		maxBackoff:     time.Second,
		attemptTimeout: 10 * time.Second,
		now:            time.Now,
	}
}

// validate checks the fields against each other.
func (c config) validate() error {
	var errs []error
	if c.attempts < 1 {
		errs = append(errs, fmt.Errorf("retry attempts must be at least 1, got %d", c.attempts))
	}
	if c.backoff < 0 || c.maxBackoff < c.backoff {
		errs = append(errs, fmt.Errorf("back-off must satisfy 0 <= first (%s) <= max (%s)", c.backoff, c.maxBackoff))
	}
	if c.ringRefresh <= 0 {
		errs = append(errs, fmt.Errorf("ring refresh interval must be positive, got %s", c.ringRefresh))
	}
	if c.attemptTimeout < 0 {
		errs = append(errs, fmt.Errorf("attempt timeout must not be negative, got %s", c.attemptTimeout))
	}
	return errors.Join(errs...)
}

// WithHTTPClient sends every request through hc (its transport, TLS and
// proxy settings); its Timeout, if set, bounds each attempt. By default the
// client builds its own, keeping up to 256 idle connections per node.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.httpClient = hc }
}

// WithRouting turns partition-aware routing on (the default) or off. Off,
// the client never fetches the ring and sends requests round robin over the
// addresses given to New, as a load balancer in front of the nodes would:
// for one address (a load balancer's), that is the only behaviour that makes
// sense.
func WithRouting(on bool) Option {
	return func(c *config) { c.routing = on }
}

// WithRingRefresh sets how old the ring may get before a request fetches it
// again in the background (default 5 s). Shorter notices membership
// changes sooner at the cost of two small requests per interval.
func WithRingRefresh(every time.Duration) Option {
	return func(c *config) { c.ringRefresh = every }
}

// WithRetry sets how many times a request is tried in all (at least 1; 1
// means no retry) and the back-off: the first retry waits about first, each
// later one twice as long, never more than max. Each wait is drawn between
// half and all of that, so clients that failed together do not retry
// together. Defaults: 4 attempts, 10 ms, 1 s.
func WithRetry(attempts int, first, max time.Duration) Option {
	return func(c *config) { c.attempts, c.backoff, c.maxBackoff = attempts, first, max }
}

// WithAttemptTimeout bounds each attempt of a request, reading the answer
// included (default 10 s, above the nodes' default --request-timeout of 2 s
// so that their own 503 comes first). A node that does not answer in time is
// given up for the next one. 0 leaves only the caller's context.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *config) { c.attemptTimeout = d }
}

// Quorum names for R and W, resolved by the node against the effective N.
const (
	QuorumOne      = -1 // one replica
	QuorumMajority = -2 // N/2+1 replicas
	QuorumAll      = -3 // every replica
)

// quorumParam renders a quorum for the r or w query parameter; "" for the
// node's default.
func quorumParam(n int) string {
	switch {
	case n == QuorumOne:
		return "one"
	case n == QuorumMajority:
		return "quorum"
	case n == QuorumAll:
		return "all"
	case n > 0:
		return fmt.Sprint(n)
	default:
		return ""
	}
}

// ReadOption adjusts one read.
type ReadOption func(*readOptions)

type readOptions struct {
	r     int
	local bool
}

// R sets the read quorum of this read: a count from 1 to the effective N, or
// QuorumOne, QuorumMajority or QuorumAll. 0 means the node's default.
func R(n int) ReadOption {
	return func(o *readOptions) { o.r = n }
}

// Local reads the answering node's own stored copy only (?local=true): no
// forwarding, quorum or repair. For operators and tests checking replicas;
// it makes sense with one address and routing off.
func Local() ReadOption {
	return func(o *readOptions) { o.local = true }
}

// WriteOption adjusts one write or delete.
type WriteOption func(*writeOptions)

type writeOptions struct {
	w           int
	contentType string
	context     string
}

// W sets the write quorum of this write or delete: a count from 1 to the
// effective N, or QuorumOne, QuorumMajority or QuorumAll. 0 means the
// node's default.
func W(n int) WriteOption {
	return func(o *writeOptions) { o.w = n }
}

// ContentType sets the value's content type, stored with it and returned on
// reads (application/octet-stream when not set). Deletes ignore it.
func ContentType(ct string) WriteOption {
	return func(o *writeOptions) { o.contentType = ct }
}

// CausalContext passes the context token of an earlier answer for the same
// key (Result.Context, or what Put or Delete returned): the write or delete
// then supersedes every version that answer covered. Without it a write is
// concurrent with whatever exists, and a delete removes what a quorum read
// sees first. "" is no context.
func CausalContext(token string) WriteOption {
	return func(o *writeOptions) { o.context = token }
}
