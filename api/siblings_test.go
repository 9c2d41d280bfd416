package api

import (
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// siblingCluster starts an in-process cluster of size nodes with the
// sibling limits given, and returns the client API of each node, as a load
// balancer would reach them.
func siblingCluster(t *testing.T, size, warn, maxSiblings int) []http.Handler {
	t.Helper()
	cfg := nodetest.DefaultConfig()
	cfg.SiblingWarn, cfg.MaxSiblings = warn, maxSiblings
	c := nodetest.MakeCluster(t, size, cfg)
	var handlers []http.Handler
	for _, id := range c.IDs() {
		n := c.Node(id)
		handlers = append(handlers, New(n, Options{Registry: n.Registry(), Logger: discardLogger(), SiblingWarn: warn}))
	}
	return handlers
}

func serveOne(h http.Handler, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, withHeaders(req, headers...))
	return rec
}

// checkSiblingHeaders checks the X-Siblings and Warning headers of an
// answer about a key with siblings siblings.
func checkSiblingHeaders(t *testing.T, what string, h http.Header, siblings, warn int) {
	t.Helper()
	wantCount := ""
	if siblings > 1 {
		wantCount = strconv.Itoa(siblings)
	}
	if got := h.Get("X-Siblings"); got != wantCount {
		t.Fatalf("%s: X-Siblings %q, want %q", what, got, wantCount)
	}
	warning := h.Get("Warning")
	switch {
	case siblings > warn && !strings.HasPrefix(warning, fmt.Sprintf(`199 - "%d siblings on this key; `, siblings)):
		t.Fatalf("%s: Warning %q, want a 199 warning about %d siblings", what, warning, siblings)
	case siblings > warn && !strings.Contains(warning, "X-Context"):
		t.Fatalf("%s: Warning %q does not say how to resolve", what, warning)
	case siblings <= warn && warning != "":
		t.Fatalf("%s: Warning %q with %d siblings, at most %d", what, warning, siblings, warn)
	}
}

// A thousand PUTs without a context to one key, through every node in turn
// as a load balancer sends them, each with w=all so that every coordinator's
// copy holds the writes before it (the limit and the count are those of the
// coordinator's copy): the key keeps the first --max-siblings,
// the rest are refused 409 too_many_siblings with nothing stored; answers
// say how many siblings the key has and warn past --sibling-warn; the GET
// stays bounded; the metrics count it all; a PUT with the read's context
// resolves the key.
func TestBlindPutsStopAtMaxSiblings(t *testing.T) {
	const (
		puts       = 1000
		valueBytes = 32
	)
	for _, tc := range []struct {
		name             string
		warn, maxSibling int
	}{
		{"small limits", 5, 10},
		{"defaults", node.DefaultSiblingWarn, node.DefaultMaxSiblings},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handlers := siblingCluster(t, 4, tc.warn, tc.maxSibling)
			refused := 0
			for i := range puts {
				h := handlers[i%len(handlers)]
				rec := serveOne(h, http.MethodPut, "/keys/hot?w=all", fmt.Sprintf("%0*d", valueBytes, i))
				what := fmt.Sprintf("PUT %d via node-%d", i, i%len(handlers))
				if i < tc.maxSibling {
					if rec.Code != http.StatusNoContent {
						t.Fatalf("%s: status %d, body %s", what, rec.Code, rec.Body)
					}
					checkSiblingHeaders(t, what, rec.Header(), i+1, tc.warn)
					continue
				}
				wantError(t, rec, http.StatusConflict, codeTooManySiblings)
				var body errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !strings.Contains(body.Error, "X-Context") {
					t.Fatalf("%s: error %q (%v) does not say to write back with the X-Context", what, body.Error, err)
				}
				if rec.Header().Get("X-Context") != "" {
					t.Fatalf("%s: a refused write answered an X-Context", what)
				}
				refused++
			}
			if refused != puts-tc.maxSibling {
				t.Fatalf("%d PUTs refused, want %d", refused, puts-tc.maxSibling)
			}

			rec := serveOne(handlers[0], http.MethodGet, "/keys/hot", "")
			if rec.Code != http.StatusMultipleChoices {
				t.Fatalf("GET: status %d", rec.Code)
			}
			checkSiblingHeaders(t, "GET", rec.Header(), tc.maxSibling, tc.warn)
			size, bound := rec.Body.Len(), tc.maxSibling*(valueBytes+256)
			if size > bound {
				t.Fatalf("GET: %d bytes, want at most %d", size, bound)
			}
			if parts := countParts(t, rec); parts != tc.maxSibling {
				t.Fatalf("GET: %d parts, want %d", parts, tc.maxSibling)
			}
			t.Logf("after %d blind PUTs: %d siblings, GET body %d bytes", puts, tc.maxSibling, size)
			ctx := rec.Header().Get("X-Context")

			// Each refusal and warning was counted by the node that
			// coordinated it; every PUT of the key past the warning level
			// and the GET were warned about.
			var refusals, putWarnings, getWarnings, conflicts float64
			for _, h := range handlers {
				families := scrapeHandler(t, h)
				refusals += counterOf(families, "dynamo_sibling_refusals_total", "")
				putWarnings += counterOf(families, "dynamo_sibling_warnings_total", "put", "op")
				getWarnings += counterOf(families, "dynamo_sibling_warnings_total", "get", "op")
				conflicts += counterOf(families, "dynamo_http_requests_total", "/keys/* PUT 409", "route", "method", "code")
			}
			if refusals != puts-float64(tc.maxSibling) || conflicts != refusals {
				t.Errorf("metrics: %v refusals, %v PUTs answered 409; want %d", refusals, conflicts, puts-tc.maxSibling)
			}
			if putWarnings != float64(tc.maxSibling-tc.warn) || getWarnings != 1 {
				t.Errorf("metrics: %v put and %v get warnings, want %d and 1", putWarnings, getWarnings, tc.maxSibling-tc.warn)
			}

			rec = serveOne(handlers[1], http.MethodPut, "/keys/hot", "resolved", "X-Context", ctx)
			if rec.Code != http.StatusNoContent {
				t.Fatalf("PUT with the read's context: status %d, body %s", rec.Code, rec.Body)
			}
			checkSiblingHeaders(t, "resolving PUT", rec.Header(), 1, tc.warn)
			rec = serveOne(handlers[2], http.MethodGet, "/keys/hot", "")
			if rec.Code != http.StatusOK || rec.Body.String() != "resolved" {
				t.Fatalf("GET after resolving: %d %q", rec.Code, rec.Body)
			}
			checkSiblingHeaders(t, "GET after resolving", rec.Header(), 1, tc.warn)
		})
	}
}

// countParts counts the parts of a multipart answer, reading its body.
func countParts(t *testing.T, rec *httptest.ResponseRecorder) int {
	t.Helper()
	_, params, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(rec.Body, params["boundary"])
	n := 0
	for {
		if _, err := mr.NextPart(); err != nil {
			return n
		}
		n++
	}
}

// A PUT a load balancer sends twice, to two nodes (the first answer was
// lost), with the same context and value, leaves one version, not two
// siblings of the same value; so does a retried PUT without a context.
func TestRetriedPutLeavesOneVersion(t *testing.T) {
	handlers := siblingCluster(t, 3, node.DefaultSiblingWarn, node.DefaultMaxSiblings)
	first, retry := handlers[0], handlers[1]

	rec := serveOne(first, http.MethodPut, "/keys/k", "v1")
	if rec.Code != http.StatusNoContent {
		t.Fatalf("PUT v1: %d %s", rec.Code, rec.Body)
	}
	ctx := serveOne(first, http.MethodGet, "/keys/k", "").Header().Get("X-Context")
	for _, h := range []http.Handler{first, retry, retry} {
		if rec := serveOne(h, http.MethodPut, "/keys/k", "v2", "X-Context", ctx); rec.Code != http.StatusNoContent {
			t.Fatalf("PUT v2 with the context: %d %s", rec.Code, rec.Body)
		}
	}
	for i, h := range handlers {
		rec := serveOne(h, http.MethodGet, "/keys/k?r=all", "")
		if rec.Code != http.StatusOK || rec.Body.String() != "v2" || rec.Header().Get("X-Siblings") != "" {
			t.Fatalf("GET via node-%d after a retried PUT: %d %q, X-Siblings %q; want 200 v2, one version",
				i, rec.Code, rec.Body, rec.Header().Get("X-Siblings"))
		}
	}

	for _, h := range []http.Handler{first, retry} {
		if rec := serveOne(h, http.MethodPut, "/keys/blind", "same"); rec.Code != http.StatusNoContent || rec.Header().Get("X-Siblings") != "" {
			t.Fatalf("blind PUT: %d, X-Siblings %q; want 204 and one version", rec.Code, rec.Header().Get("X-Siblings"))
		}
	}
	if rec := serveOne(handlers[2], http.MethodGet, "/keys/blind?r=all", ""); rec.Code != http.StatusOK || rec.Body.String() != "same" {
		t.Fatalf("GET after a retried blind PUT: %d %q; want 200 same", rec.Code, rec.Body)
	}
}
