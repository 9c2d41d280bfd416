package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// accessLog writes one line per request: method, path, route, status,
// bytes and duration, at Debug, or at Warn as "slow request" when it took
// slow or longer (0: never). It costs nothing when neither applies.
func accessLog(log *slog.Logger, slow time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			debug := log.Enabled(r.Context(), slog.LevelDebug)
			if !debug && (slow <= 0 || !log.Enabled(r.Context(), slog.LevelWarn)) {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			took := time.Since(start)
			level, msg := slog.LevelDebug, "http request"
			if slow > 0 && took >= slow {
				level, msg = slog.LevelWarn, "slow request"
			} else if !debug {
				return
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			log.LogAttrs(r.Context(), level, msg,
				slog.String("method", r.Method),
				slog.String("path", r.URL.EscapedPath()),
				slog.String("route", chi.RouteContext(r.Context()).RoutePattern()),
				slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", took),
				slog.String("remote", r.RemoteAddr),
			)
		})
	}
}
