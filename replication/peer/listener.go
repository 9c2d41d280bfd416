package peer

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
)

// Server timeouts. IdleTimeout stays above the client's idleConnTimeout so
// that idle connections are closed by the client, never under a request.
const (
	serverIdleTimeout       = 90 * time.Second
	serverReadHeaderTimeout = 10 * time.Second
	serverMaxHeaderBytes    = 64 << 10
)

// Listener is a peer server bound to its own address (--peer-listen).
type Listener struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
	err  error         // Serve's error, other than ErrServerClosed; read after done
}

// Listen binds addr and serves the peer protocol for h on it until Close.
func Listen(addr string, h replication.Handler) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		srv: &http.Server{
			Handler:           withProfiling(NewServer(h)),
			ReadHeaderTimeout: serverReadHeaderTimeout,
			IdleTimeout:       serverIdleTimeout,
			MaxHeaderBytes:    serverMaxHeaderBytes,
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			l.err = err
		}
	}()
	return l, nil
}

// Addr is the bound address (useful when addr asked for port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops accepting, lets calls in flight finish until ctx is done,
// then cuts the rest off. Cutting them is not an error: net/http counts a
// connection that has not sent its first request yet (peers open spares)
// as active, and the calling node retries or hints whatever was cut.
func (l *Listener) Close(ctx context.Context) error {
	if l.srv.Shutdown(ctx) != nil {
		l.srv.Close()
	}
	<-l.done
	return l.err
}

// withProfiling serves Go's profiles under /debug/pprof/ beside the peer
// protocol: operators reach them on the peer port, which is never exposed
// to clients (`go tool pprof http://<peer-listen>/debug/pprof/profile`).
func withProfiling(peers http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathPrefix, peers)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", peers) // everything else: the peer server's own 404
	return mux
}
