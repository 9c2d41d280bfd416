package api

import (
	"io"
	"net/http"
)

// healthz is GET /healthz: 200 while the process serves.
func healthz(w http.ResponseWriter, r *http.Request) {
	writeText(w, "ok\n")
}

// readyz is GET /readyz: 200 once the node can serve keys, 503 before that
// and while it shuts down, so a load balancer stops sending it requests.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.svc.Ready() {
		writeError(w, &apiError{http.StatusServiceUnavailable, codeNotReady, "the node is starting or shutting down"})
		return
	}
	writeText(w, "ready\n")
}

func writeText(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, body) //nolint:errcheck // the client may be gone
}
