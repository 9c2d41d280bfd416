package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to one dynamo cluster. It is safe for concurrent use; make one
// and share it.
type Client struct {
	seeds  []string // base URLs given to New, normalised
	hc     *http.Client
	ownHC  bool // hc was built by New, so Close may close its connections
	cfg    config
	router *router // nil when routing is off
	// next picks the seed a request without routing starts from.
	next atomic.Uint64
}

// New returns a client of the cluster whose nodes (or load balancer) answer
// at addrs: "host:port" or "http://host:port". With routing on, any one
// live node is enough; the others are found through GET /cluster. New does
// no I/O: the first request fetches the ring.
func New(addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, ErrNoAddrs
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{cfg: cfg, hc: cfg.httpClient}
	for _, a := range addrs {
		base, err := baseURL(a)
		if err != nil {
			return nil, err
		}
		c.seeds = appendNew(c.seeds, base)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: newTransport()}
		c.ownHC = true
	}
	if cfg.routing {
		c.router = newRouter(c.seeds, c.hc, cfg)
	}
	return c, nil
}

// newTransport is http.DefaultTransport with room for many concurrent
// requests to each node: the default keeps only two idle connections per
// host, so a busy client would open and close connections all the time.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	return t
}

// Close releases the idle connections of the client's own transport (not of
// one given with WithHTTPClient). The client must not be used afterwards.
func (c *Client) Close() {
	if c.ownHC {
		c.hc.CloseIdleConnections()
	}
}

// baseURL normalises a node address to "scheme://host:port".
func baseURL(addr string) (string, error) {
	s := strings.TrimSuffix(strings.TrimSpace(addr), "/")
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return "", fmt.Errorf("client: address %q is not host:port or http(s)://host:port", addr)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return "", fmt.Errorf("client: address %q has no port", addr)
	}
	return u.Scheme + "://" + u.Host, nil
}

// schemeOf returns the scheme of a base URL.
func schemeOf(base string) string {
	scheme, _, _ := strings.Cut(base, "://")
	return scheme
}

// baseOf returns the base URL of a full one.
func baseOf(full string) string {
	u, err := url.Parse(full)
	if err != nil {
		return full
	}
	return u.Scheme + "://" + u.Host
}

// keyPath is the escaped path of a key's resource: every byte that could be
// read as a separator or escape is percent-encoded, "/" included, so the
// node decodes exactly key.
func keyPath(prefix, key string) string {
	return prefix + url.PathEscape(key)
}

// Get reads key. It returns the live versions (one, or several siblings)
// and the context token to pass to a write that supersedes them. A key with
// no live value returns ErrNotFound together with a Result whose Context is
// set when the key has a deleted history.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (*Result, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	q := url.Values{}
	if r := quorumParam(o.r); r != "" {
		q.Set("r", r)
	}
	if o.local {
		q.Set("local", "true")
	}
	ans, err := c.do(ctx, key, request{method: http.MethodGet, path: keyPath("/keys/", key), query: q})
	if err != nil {
		return nil, err
	}
	switch ans.status {
	case http.StatusOK, http.StatusMultipleChoices:
		return readResult(key, ans.status, ans.header, ans.body)
	case http.StatusNotFound:
		if e := errorFrom(ans.node, ans.status, ans.body); e.Code != "not_found" {
			return nil, e // not the key's 404: a proxy or an older node
		}
		return &Result{Key: key, Context: ans.header.Get("X-Context")}, ErrNotFound
	default:
		return nil, errorFrom(ans.node, ans.status, ans.body)
	}
}

// Put writes value under key and returns the new version's context token.
// Without CausalContext the write is concurrent with whatever the key holds,
// so a live value and this one become siblings. A write that would leave the
// key with more siblings than the node's --max-siblings fails with an error
// matching ErrTooManySiblings; resolve the key (GetResolve) first.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (string, error) {
	req, o := writeRequest(http.MethodPut, key, opts)
	req.body = value
	if req.body == nil {
		req.body = []byte{}
	}
	req.contentType = o.contentType
	return c.write(ctx, key, req)
}

// Delete deletes key and returns the tombstone's context token. With
// CausalContext it deletes the versions that token covers and versions
// written concurrently survive; without, the node first reads the key at R
// and deletes what it saw. Deleting a key that does not exist succeeds.
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) (string, error) {
	req, _ := writeRequest(http.MethodDelete, key, opts)
	return c.write(ctx, key, req)
}

func writeRequest(method, key string, opts []WriteOption) (request, writeOptions) {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := request{method: method, path: keyPath("/keys/", key), query: url.Values{}, context: o.context}
	if w := quorumParam(o.w); w != "" {
		req.query.Set("w", w)
	}
	return req, o
}

func (c *Client) write(ctx context.Context, key string, req request) (string, error) {
	ans, err := c.do(ctx, key, req)
	if err != nil {
		return "", err
	}
	if ans.status != http.StatusNoContent {
		return "", errorFrom(ans.node, ans.status, ans.body)
	}
	return ans.header.Get("X-Context"), nil
}

// GetResolve reads key and, when it holds siblings, merges them with merge
// and writes the merge back with the read's context, replacing them all. It
// returns what the key now holds as far as this client knows: the one value
// read, or the merge with the write's context. A key with no live value
// returns ErrNotFound as Get does, without calling merge.
//
// A write concurrent with the resolution is not covered by the read's
// context and survives as a sibling of the merge, which a later read shows.
func (c *Client) GetResolve(ctx context.Context, key string, merge MergeFunc) (*Result, error) {
	res, err := c.Get(ctx, key)
	if err != nil || !res.Conflict() {
		return res, err
	}
	value, contentType, err := merge(res.Siblings)
	if err != nil {
		return nil, fmt.Errorf("client: merging the %d siblings of %q: %w", len(res.Siblings), key, err)
	}
	written, err := c.Put(ctx, key, value, ContentType(contentType), CausalContext(res.Context))
	if err != nil {
		return nil, err
	}
	return &Result{
		Key:      key,
		Siblings: []Sibling{{Value: value, ContentType: contentTypeOr(contentType)}},
		Context:  written,
	}, nil
}

// request is one HTTP request to send, to whichever node.
type request struct {
	method      string
	path        string // escaped
	query       url.Values
	body        []byte // nil: no body
	contentType string
	context     string
}

// answer is a node's complete answer.
type answer struct {
	node   string
	status int
	header http.Header
	body   []byte
}

// do sends req for key to the nodes in turn until one answers with
// something other than a 503, within the attempts and ctx. key picks the
// nodes when routing is on; "" means any node.
func (c *Client) do(ctx context.Context, key string, req request) (*answer, error) {
	targets := c.targets(ctx, key)
	var lastErr error
	for attempt := range c.cfg.attempts {
		if attempt > 0 {
			if err := c.backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("%w (after: %w)", err, lastErr)
			}
		}
		node := targets[attempt%len(targets)]
		ans, err := c.send(ctx, node, req)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("client: %s %s: %w", req.method, node+req.path, ctx.Err())
		case err != nil:
			lastErr = fmt.Errorf("client: %s %s: %w", req.method, node+req.path, err)
			c.nodeFailed(node)
		case ans.status == http.StatusServiceUnavailable:
			e := errorFrom(node, ans.status, ans.body)
			lastErr = e
			if e.Code == "not_ready" || e.Code == "" {
				// The node itself is starting or stopping, or something
				// in front of it answered: send elsewhere for a while.
				c.nodeFailed(node)
			} else {
				// Too few replicas answered: the node is fine, but the
				// membership may have changed.
				c.unavailable()
			}
		default:
			return ans, nil
		}
	}
	return nil, lastErr
}

// targets lists the nodes to try for key, best first.
func (c *Client) targets(ctx context.Context, key string) []string {
	if c.router != nil && key != "" {
		return c.router.targets(ctx, key)
	}
	// Round robin, as a load balancer would: each request starts at the
	// next seed, and its retries go on to the following ones.
	start := int(c.next.Add(1)-1) % len(c.seeds)
	return append(c.seeds[start:len(c.seeds):len(c.seeds)], c.seeds[:start]...)
}

func (c *Client) nodeFailed(node string) {
	if c.router != nil {
		c.router.nodeFailed(node)
	}
}

func (c *Client) unavailable() {
	if c.router != nil {
		c.router.refresh(refreshAfterFailure)
	}
}

// backoff waits before retry number attempt (1 for the first retry): the
// back-off doubled attempt-1 times, capped, then drawn between half and all
// of it. It returns early with ctx's error.
func (c *Client) backoff(ctx context.Context, attempt int) error {
	d := c.cfg.backoff << min(attempt-1, 30)
	if d > c.cfg.maxBackoff || d <= 0 {
		d = c.cfg.maxBackoff
	}
	if d > 1 {
		d = d/2 + rand.N(d/2+1)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: gave up waiting to retry: %w", ctx.Err())
	}
}

// send makes one attempt at node and reads the whole answer.
func (c *Client) send(ctx context.Context, node string, req request) (*answer, error) {
	if c.cfg.attemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.attemptTimeout)
		defer cancel()
	}
	target := node + req.path
	if len(req.query) > 0 {
		target += "?" + req.query.Encode()
	}
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, target, body)
	if err != nil {
		return nil, err
	}
	if req.contentType != "" {
		hreq.Header.Set("Content-Type", req.contentType)
	}
	if req.context != "" {
		hreq.Header.Set("X-Context", req.context)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	return &answer{node: node, status: resp.StatusCode, header: resp.Header, body: data}, nil
}
