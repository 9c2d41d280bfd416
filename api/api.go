package api

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// Service is what the HTTP layer needs of a node; *node.Node implements it.
// Its methods are called concurrently from many requests.
type Service interface {
	// PutVersion stores a value and returns the new version's context and
	// how many siblings the key holds after it (0 for one). It reports
	// node.ErrTooManySiblings for a write refused at the sibling limit.
	PutVersion(ctx context.Context, req node.PutRequest) (node.PutResult, error)
	// Get reads a key at the request's read quorum; a nil object means the
	// key was never written.
	Get(ctx context.Context, req node.GetRequest) (*version.Object, error)
	// GetLocal returns this node's own copy, with no forwarding, quorum or
	// repair (?local=true).
	GetLocal(key []byte) (*version.Object, error)
	// Delete removes the versions the request's context covers and returns
	// the tombstone's context.
	Delete(ctx context.Context, req node.DeleteRequest) (version.Clock, error)
	// Quorums returns the effective N, R and W.
	Quorums() node.Quorums
	Cluster() node.ClusterInfo
	KeyInfo(key []byte) node.KeyInfo
	Ring() node.RingInfo
	// Ready reports whether the store is open and the node has a ring.
	Ready() bool
	// Leave starts handing off this node's data before it leaves the
	// cluster, and returns at once; calling it again is harmless.
	Leave() error
	// Remove forgets a member that died for good. It reports
	// node.ErrUnknownMember for an id that is not a member (or is gone) and
	// node.ErrMemberAlive for one that is up, or is this node.
	Remove(id string) error
}

var _ Service = (*node.Node)(nil)

// DefaultMaxValueBytes is the largest value accepted when
// Options.MaxValueBytes is 0, the contract's default for --max-value-bytes.
const DefaultMaxValueBytes = 1 << 20

// Options configures New. The zero value is usable.
type Options struct {
	// MaxValueBytes is the largest PUT body accepted (--max-value-bytes);
	// 0 or less means DefaultMaxValueBytes.
	MaxValueBytes int64
	// Registry is where the request metrics register and what /metrics
	// serves; nil means a new registry private to this handler.
	Registry *prometheus.Registry
	// Logger receives internal errors, recovered panics (Error), one access
	// line per request (Debug) and one per slow request (Warn); nil
	// discards everything.
	Logger *slog.Logger
	// SlowRequest is how long a request may take before it is logged as
	// slow (--slow-request); 0 logs none.
	SlowRequest time.Duration
	// SiblingWarn is the sibling count above which a GET or PUT answer
	// carries a Warning header (--sibling-warn); 0 or less means
	// node.DefaultSiblingWarn.
	SiblingWarn int
}

// server holds what the handlers share; it is immutable after New.
type server struct {
	svc           Service
	maxValueBytes int64
	siblingWarn   int
	log           *slog.Logger
	uiPage        *template.Template
}

// New returns the client HTTP handler of a node serving svc. It panics only
// if opts.Registry already holds a different collector under one of the
// request metric names.
func New(svc Service, opts Options) http.Handler {
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.SiblingWarn <= 0 {
		opts.SiblingWarn = node.DefaultSiblingWarn
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &server{svc: svc, maxValueBytes: opts.MaxValueBytes, siblingWarn: opts.SiblingWarn, log: opts.Logger, uiPage: parseUI()}

	r := chi.NewRouter()
	r.Use(compressResponses) // outermost: every layer inside sees the plain body
	// Outermost first: metrics and the access log must see the 500 the
	// recoverer writes.
	r.Use(instrument(newHTTPMetrics(opts.Registry)), accessLog(opts.Logger, opts.SlowRequest), recoverer(opts.Logger))
	r.NotFound(s.noRoute)
	r.MethodNotAllowed(s.methodNotAllowed(r))

	r.Put("/keys/*", s.putKey)
	r.Get("/keys/*", s.getKey)
	r.Delete("/keys/*", s.deleteKey)

	r.Get("/healthz", healthz)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{}))
	r.Get("/ui", s.ui)

	r.Get("/cluster", s.cluster)
	r.Get("/cluster/keys/*", s.clusterKey)
	r.Get("/cluster/ring", s.clusterRing)
	r.Post("/cluster/leave", s.clusterLeave)
	r.Post("/cluster/remove/{id}", s.clusterRemove)
	return r
}

// noRoute answers paths no route matches.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, &apiError{status: http.StatusNotFound, code: codeNoRoute,
		msg: "no such route: " + r.URL.Path})
}

// methodNotAllowed answers a known path asked with a method it does not
// serve. chi does not pass the allowed methods to a custom handler, so they
// are found by asking the router again. The matched pattern is recorded on the
// route context so that request metrics label the 405 with its route.
func (s *server) methodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	candidates := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions}
	return func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
		var allowed []string
		pattern := ""
		for _, m := range candidates {
			if p := mux.Find(chi.NewRouteContext(), m, path); p != "" {
				allowed = append(allowed, m)
				pattern = p
			}
		}
		if len(allowed) == 0 {
			s.noRoute(w, r)
			return
		}
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() == "" {
			rctx.RoutePatterns = append(rctx.RoutePatterns, pattern)
		}
		allow := strings.Join(allowed, ", ")
		w.Header().Set("Allow", allow)
		s.fail(w, r, &apiError{status: http.StatusMethodNotAllowed, code: codeMethodNotAllowed,
			msg: fmt.Sprintf("method %q is not allowed here; allowed: %s", r.Method, allow)})
	}
}
