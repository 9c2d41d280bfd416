package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
)

// Options configures a Transport.
type Options struct {
	// Self is this node's id, sent with every request. Required.
	Self string
	// Resolve maps a node id to its peer address, host:port; ok is false
	// for an id it does not know, and the call fails with ErrUnreachable.
	// Called once per request, concurrently. Required.
	Resolve func(id string) (addr string, ok bool)
	// MaxIdleConnsPerHost bounds the keep-alive connections kept open to
	// each peer. 0 means 64.
	MaxIdleConnsPerHost int
	// DialTimeout bounds establishing one connection; the call's context
	// may end it sooner. 0 means 1s.
	DialTimeout time.Duration
}

// Defaults for zero Options fields.
const (
	DefaultMaxIdleConnsPerHost = 64
	DefaultDialTimeout         = time.Second

	// idleConnTimeout closes a connection nobody used for this long. Keep
	// it below the peer server's IdleTimeout, so that the client, not the
	// server, closes idle connections and a request never races a close.
	idleConnTimeout = 30 * time.Second
)

// Transport calls other nodes' peer servers over HTTP/1.1 with keep-alive
// connections. It is safe for concurrent use.
type Transport struct {
	self    string
	resolve func(id string) (string, bool)
	http    *http.Transport
	// bufs holds *[]byte for response bodies; decoders copy what they keep.
	bufs sync.Pool
}

var _ replication.Transport = (*Transport)(nil)

// NewTransport returns a Transport for opts. It panics when Self or Resolve
// is missing: a node cannot work without them.
func NewTransport(opts Options) *Transport {
	if opts.Self == "" || opts.Resolve == nil {
		panic("peer: NewTransport needs Options.Self and Options.Resolve")
	}
	if opts.MaxIdleConnsPerHost <= 0 {
		opts.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	dialer := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 15 * time.Second}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &Transport{
		self:    opts.Self,
		resolve: opts.Resolve,
		http: &http.Transport{
			Proxy:               nil, // peers are dialled directly, whatever the environment says
			DialContext:         dialer.DialContext,
			MaxIdleConnsPerHost: opts.MaxIdleConnsPerHost,
			IdleConnTimeout:     idleConnTimeout,
			DisableCompression:  true, // values are opaque bytes; most do not compress
			Protocols:           protocols,
		},
		bufs: sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }},
	}
}

// Close closes idle connections. Calls in flight finish; later calls open
// new connections.
func (t *Transport) Close() { t.http.CloseIdleConnections() }

// Fetch reads node to's copy of a key.
func (t *Transport) Fetch(ctx context.Context, to string, req replication.FetchRequest) (replication.FetchResponse, error) {
	return roundTrip(ctx, t, to, kindFetch, true, req, 16+len(req.Key), appendFetchRequest, decodeFetchResponse)
}

// Store merges an object into node to's copy.
func (t *Transport) Store(ctx context.Context, to string, req replication.StoreRequest) (replication.StoreResponse, error) {
	return roundTrip(ctx, t, to, kindStore, true, req, 16+len(req.Key)+objectSize(req.Object), appendStoreRequest, decodeStoreResponse)
}

// Coordinate asks node to to run a client request as coordinator.
func (t *Transport) Coordinate(ctx context.Context, to string, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	size := 32 + len(req.Key) + len(req.Value) + len(req.ContentType) + clockSize(req.Context)
	return roundTrip(ctx, t, to, kindCoordinate, false, req, size, appendCoordinateRequest, decodeCoordinateResponse)
}

// Range reads one page of a partition node to holds.
func (t *Transport) Range(ctx context.Context, to string, req replication.RangeRequest) (replication.RangeResponse, error) {
	return roundTrip(ctx, t, to, kindRange, true, req, 24+len(req.After), appendRangeRequest, decodeRangeResponse)
}

// Exchange sends node to one message of a Merkle tree comparison.
func (t *Transport) Exchange(ctx context.Context, to string, req replication.ExchangeRequest) (replication.ExchangeResponse, error) {
	return roundTrip(ctx, t, to, kindExchange, true, req, 16+12*len(req.Message.Hashes), appendExchangeRequest, decodeExchangeResponse)
}

// roundTrip sends one request. idempotent requests (merging a store twice
// changes nothing; fetch and range only read) may be resent by net/http when a kept-alive connection
// turns out to be closed; a coordinate request is never resent.
func roundTrip[Req, Resp any](
	ctx context.Context, t *Transport, to, kind string, idempotent bool, req Req, sizeHint int,
	encode func([]byte, Req) []byte, decode func([]byte) (Resp, error),
) (Resp, error) {
	var zero Resp
	addr, ok := t.resolve(to)
	if !ok || addr == "" {
		return zero, fmt.Errorf("%w: peer %s: address unknown", replication.ErrUnreachable, to)
	}
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("peer %s: %w", to, err)
	}

	// connected records whether the latest attempt got a connection: until
	// then it wrote nothing. net/http makes another attempt only when the
	// previous one wrote nothing, or for an idempotent request on a kept-alive
	// connection the server closed; so when the last attempt never
	// connected, the request had no effect there that a retry elsewhere
	// would not repeat harmlessly.
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { connected.Store(false) },
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	body := encode(make([]byte, 0, sizeHint), req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+PathPrefix+kind, bytes.NewReader(body))
	if err != nil {
		return zero, fmt.Errorf("%w: peer %s at %q: %w", replication.ErrUnreachable, to, addr, err)
	}
	h := hreq.Header
	h["Content-Type"] = []string{contentType}
	h[HeaderFrom] = []string{t.self}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return zero, fmt.Errorf("peer %s: %w", to, context.DeadlineExceeded)
		}
		h[HeaderTimeout] = []string{left.String()}
	}
	if idempotent {
		h["Idempotency-Key"] = nil // replayable, but not sent on the wire
	}

	resp, err := t.http.RoundTrip(hreq)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		if !connected.Load() {
			return zero, fmt.Errorf("%w: peer %s at %s: %w", replication.ErrUnreachable, to, addr, err)
		}
		return zero, fmt.Errorf("%w: peer %s at %s: %w", replication.ErrOutcomeUnknown, to, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return zero, remoteError(to, resp)
	}

	if resp.ContentLength > MaxBodyBytes {
		return zero, fmt.Errorf("peer %s: %s response of %d bytes is over %d", to, kind, resp.ContentLength, MaxBodyBytes)
	}
	bufp := t.bufs.Get().(*[]byte)
	defer t.putBuffer(bufp)
	data, err := readBody(io.LimitReader(resp.Body, MaxBodyBytes+1), resp.ContentLength, (*bufp)[:0])
	*bufp = data
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return zero, fmt.Errorf("%w: peer %s at %s: reading %s response: %w", replication.ErrOutcomeUnknown, to, addr, kind, err)
	}
	if len(data) > MaxBodyBytes {
		return zero, fmt.Errorf("peer %s: %s response over %d bytes", to, kind, MaxBodyBytes)
	}
	out, err := decode(data)
	if err != nil {
		return zero, fmt.Errorf("peer %s: bad %s response: %w", to, kind, err)
	}
	return out, nil
}

func (t *Transport) putBuffer(bufp *[]byte) {
	if cap(*bufp) > pooledBufferMax {
		return
	}
	*bufp = (*bufp)[:0]
	t.bufs.Put(bufp)
}

// remoteError reads a non-200 answer. The rest of a long body is drained so
// the connection can be reused.
func remoteError(to string, resp *http.Response) error {
	text, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorMessage+64))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code, msg, ok := strings.Cut(string(text), "\n")
	if !ok || !isCodeWord(code) {
		// Not a peer server's answer (a proxy, another service).
		code, msg = "", strings.TrimSpace(string(text))
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &RemoteError{Node: to, Status: resp.StatusCode, Code: code, Message: msg}
}

func isCodeWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
