package api

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"strconv"
)

// uiSource is the page template; html/template escapes every value for its
// context, so member names cannot inject markup.
//
//go:embed ui.html
var uiSource string

// parseUI parses the page; it fails only if ui.html is broken, which the
// tests catch.
func parseUI() *template.Template {
	return template.Must(template.New("ui").Parse(uiSource))
}

// ui is GET /ui: the cluster page for people. It is rendered with this node's
// view and then refreshes itself from GET /cluster every two seconds.
func (s *server) ui(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := s.uiPage.Execute(&buf, clusterView(s.svc.Cluster())); err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Everything the page needs is inline; it may only talk to this origin.
	h.Set("Content-Security-Policy",
		"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	w.Write(buf.Bytes()) //nolint:errcheck // the client may be gone
}
