package api

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Defaults of ServerOptions: what a node serves its clients with.
const (
	// DefaultReadHeaderTimeout bounds reading a request line and its
	// headers; a client slower than that is disconnected without an answer.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultBodyTimeout bounds reading a request body, from the end of its
	// headers: a value of 1 MiB (the default --max-value-bytes) needs about
	// 17 KiB/s to make it.
	DefaultBodyTimeout = time.Minute
	// DefaultIdleTimeout is how long a kept-alive connection may wait for
	// its next request.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultMaxHeaderBytes bounds a request line and its headers, net/http's
	// own default; net/http reads up to 4 KiB past it before answering 431.
	DefaultMaxHeaderBytes = http.DefaultMaxHeaderBytes
)

// ServerOptions configures NewServer. The zero value is what a node runs
// with; tests shorten timeouts through it.
type ServerOptions struct {
	// ReadHeaderTimeout: 0 means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// BodyTimeout is how long a request may take to send its whole body,
	// counted from the end of its headers: 0 means DefaultBodyTimeout. A PUT
	// whose value is late is answered 408 (code body_timeout); a request
	// whose handler does not read the body is answered as usual and its
	// connection closed. Either way the connection is not held any longer.
	BodyTimeout time.Duration
	// IdleTimeout: 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes: 0 means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// Logger receives the server's own errors (failed accepts, panics net/http
	// recovered) at Warn; nil discards them.
	Logger *slog.Logger
	// ConnState, when set, is called as http.Server.ConnState is. The
	// server's own ConnState hook must stay in place (see Server), so this
	// is where to add one.
	ConnState func(net.Conn, http.ConnState)
}

// Server is the client HTTP server of a node: an http.Server configured by
// NewServer, whose Serve and ListenAndServe also wrap every connection so
// that the errors net/http answers by itself carry the JSON error body too
// (see jsonErrorConn). Use those two, not the embedded http.Server's, and
// leave its Handler, ConnState and ConnContext as NewServer set them.
type Server struct {
	*http.Server
}

// NewServer returns the server production runs handler with (a handler from
// New): its timeouts, header limit, body deadline and JSON answers to the
// requests net/http refuses itself. The caller may set the fields NewServer
// leaves zero, such as Addr; a ConnState hook goes in opts.
func NewServer(handler http.Handler, opts ServerOptions) *Server {
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = DefaultBodyTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	connState := opts.ConnState
	return &Server{&http.Server{
		Handler:           markAnswering(bodyDeadline(opts.BodyTimeout, handler)),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		ConnContext:       withConn,
		ConnState: func(c net.Conn, state http.ConnState) {
			trackIdle(c, state)
			if connState != nil {
				connState(c, state)
			}
		},
	}}
}

// Serve serves connections accepted on ln, each wrapped by jsonErrorConn.
func (s *Server) Serve(ln net.Listener) error {
	return s.Server.Serve(jsonErrorListener{Listener: ln, maxHeaderBytes: s.MaxHeaderBytes})
}

// ListenAndServe listens on s.Addr (":http" when empty) and calls Serve.
func (s *Server) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = ":http"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// bodyDeadline gives every request with a body timeout to send all of it.
//
// http.Server.ReadTimeout is not used for this: it runs from the start of the
// request and stays set while the handler works, and once the body has been
// read net/http keeps a read pending on the connection (to notice a client
// that goes away) whose timeout cancels the request's context. A slow quorum
// would then be cut by a read timeout. Here the deadline is set on the
// connection only while the body is unread and lifted at its end, so it
// bounds exactly the body. A request without a body gets no deadline; net/http
// sets its own between requests (ReadHeaderTimeout, IdleTimeout).
//
// The deadline also bounds what net/http reads after the handler to discard
// an unread body, which otherwise waits on a stalled client forever, before
// the answer is even sent.
func bodyDeadline(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			next.ServeHTTP(w, r) // not a net/http connection (a test recorder)
			return
		}
		// A shallow copy: net/http inspects its own request's Body after
		// the handler, which must stay its own type.
		r2 := r.WithContext(r.Context())
		r2.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		next.ServeHTTP(w, r2)
	})
}

// deadlineBody lifts the connection's read deadline when the body ends. It
// is not lifted after an error: a timed-out body stays timed out, so that
// net/http's discarding of the rest fails at once too.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.rc.SetReadDeadline(time.Time{}) //nolint:errcheck // it was settable a moment ago
	}
	return n, err
}
