package api

import (
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/go-chi/chi/v5/middleware"
)

// recoverer turns a panic in a handler into a logged 500 JSON error, so one
// bad request never takes the node down. When the answer had already begun,
// the connection is aborted instead: a truncated answer must not look whole.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler { //nolint:errorlint // the sentinel is panicked as is
					panic(rec)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path,
					"panic", rec, "stack", string(debug.Stack()))
				if ww.Status() != 0 {
					panic(http.ErrAbortHandler)
				}
				writeError(ww, &apiError{http.StatusInternalServerError, codeInternal, "internal error"})
			}()
			next.ServeHTTP(ww, r)
		})
	}
}
