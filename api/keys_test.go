package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/version"
)

func TestPutGetRoundTrip(t *testing.T) {
	h := newHarness(t)
	rec := h.do(http.MethodPut, "/keys/greeting", "hello", "Content-Type", "text/plain; charset=utf-8")
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Fatalf("PUT: status %d, body %q; want 204 and no body", rec.Code, rec.Body)
	}
	putCtx := rec.Header().Get("X-Context")
	if _, err := version.DecodeContext(putCtx); err != nil {
		t.Fatalf("PUT X-Context %q does not decode: %v", putCtx, err)
	}
	if got := h.svc.lastPut; string(got.Key) != "greeting" || string(got.Value) != "hello" || got.HasContext || got.W != 0 {
		t.Fatalf("service saw %+v", got)
	}

	rec = h.do(http.MethodGet, "/keys/greeting", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "hello" {
		t.Fatalf("GET: status %d, body %q", rec.Code, rec.Body)
	}
	hdr := rec.Header()
	if ct := hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	obj := h.svc.objects["greeting"]
	if got, want := hdr.Get("X-Context"), version.EncodeContext(obj.Context()); got != want || got != putCtx {
		t.Fatalf("GET X-Context %q, want %q (and the PUT's %q)", got, want, putCtx)
	}
	if got := hdr.Get("ETag"); got != obj.ETag() || !strings.HasPrefix(got, `"`) {
		t.Fatalf("ETag %q, want %q", got, obj.ETag())
	}
	lm, err := http.ParseTime(hdr.Get("Last-Modified"))
	if err != nil || !lm.Equal(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)) {
		t.Fatalf("Last-Modified %q (%v)", hdr.Get("Last-Modified"), err)
	}
	if hdr.Get("Content-Length") != "5" {
		t.Fatalf("Content-Length %q", hdr.Get("Content-Length"))
	}
}

func TestPutDefaultContentType(t *testing.T) {
	h := newHarness(t)
	h.put("k", "raw", "")
	if got := h.svc.lastPut.ContentType; got != "application/octet-stream" {
		t.Fatalf("stored content type %q", got)
	}
	rec := h.do(http.MethodGet, "/keys/k", "")
	if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusOK || ct != "application/octet-stream" {
		t.Fatalf("GET: status %d, Content-Type %q", rec.Code, ct)
	}
}

func TestPutEmptyValue(t *testing.T) {
	h := newHarness(t)
	h.put("empty", "", "text/plain")
	rec := h.do(http.MethodGet, "/keys/empty", "")
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "0" {
		t.Fatalf("GET of an empty value: status %d, body %q", rec.Code, rec.Body)
	}
}

// readSiblings parses a 300 answer's multipart body.
type part struct {
	contentType, lastModified, body string
}

func readSiblings(t testing.TB, contentType string, body io.Reader) []part {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q: want multipart/mixed with a boundary (%v)", contentType, err)
	}
	mr := multipart.NewReader(body, params["boundary"])
	var parts []part
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return parts
		}
		if err != nil {
			t.Fatalf("reading part %d: %v", len(parts), err)
		}
		value, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("reading part %d body: %v", len(parts), err)
		}
		parts = append(parts, part{p.Header.Get("Content-Type"), p.Header.Get("Last-Modified"), string(value)})
	}
}

func TestSiblingsAndResolution(t *testing.T) {
	h := newHarness(t)
	h.put("cart", `{"items":["milk"]}`, "application/json")
	h.put("cart", "eggs", "text/plain") // blind: no X-Context, so concurrent

	rec := h.do(http.MethodGet, "/keys/cart", "")
	if rec.Code != http.StatusMultipleChoices {
		t.Fatalf("GET after two blind PUTs: status %d, want 300", rec.Code)
	}
	obj := h.svc.objects["cart"]
	if got := rec.Header().Get("X-Context"); got != version.EncodeContext(obj.Context()) {
		t.Fatalf("300 X-Context %q does not cover the object's clock", got)
	}
	if got := rec.Header().Get("ETag"); got != obj.ETag() {
		t.Fatalf("300 ETag %q, want %q", got, obj.ETag())
	}
	parts := readSiblings(t, rec.Header().Get("Content-Type"), rec.Body)
	want := []part{
		{"application/json", "Mon, 06 May 2024 07:08:09 GMT", `{"items":["milk"]}`},
		{"text/plain", "Mon, 06 May 2024 07:08:10 GMT", "eggs"},
	}
	if !slices.Equal(parts, want) {
		t.Fatalf("parts\n%q\nwant\n%q", parts, want)
	}

	// A write carrying the 300's context supersedes both siblings.
	h.put("cart", "milk and eggs", "text/plain", "X-Context", rec.Header().Get("X-Context"))
	rec = h.do(http.MethodGet, "/keys/cart", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "milk and eggs" {
		t.Fatalf("GET after resolving: status %d, body %q", rec.Code, rec.Body)
	}
}

func TestDelete(t *testing.T) {
	h := newHarness(t)
	h.put("doomed", "v", "")
	rec := h.do(http.MethodDelete, "/keys/doomed", "")
	if rec.Code != http.StatusNoContent || rec.Header().Get("X-Context") == "" {
		t.Fatalf("DELETE: status %d, X-Context %q", rec.Code, rec.Header().Get("X-Context"))
	}
	if h.svc.lastDelete.HasContext {
		t.Fatal("DELETE without X-Context reached the service with HasContext")
	}
	tombstone := rec.Header().Get("X-Context")

	rec = h.do(http.MethodGet, "/keys/doomed", "")
	wantError(t, rec, http.StatusNotFound, codeNotFound)
	if got := rec.Header().Get("X-Context"); got != tombstone {
		t.Fatalf("404 of a deleted key: X-Context %q, want the tombstone's %q", got, tombstone)
	}

	rec = h.do(http.MethodGet, "/keys/never", "")
	wantError(t, rec, http.StatusNotFound, codeNotFound)
	if got := rec.Header().Get("X-Context"); got != "" {
		t.Fatalf("404 of a never-written key carries X-Context %q", got)
	}

	rec = h.do(http.MethodDelete, "/keys/never", "")
	if rec.Code != http.StatusNoContent || rec.Header().Get("X-Context") == "" {
		t.Fatalf("DELETE of a never-written key: status %d, X-Context %q", rec.Code, rec.Header().Get("X-Context"))
	}
}

func TestDeleteWithContext(t *testing.T) {
	h := newHarness(t)
	seen := h.put("k", "one", "")
	h.put("k", "two", "") // concurrent with what the deleter saw
	rec := h.do(http.MethodDelete, "/keys/k", "", "X-Context", seen)
	if rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: status %d", rec.Code)
	}
	if d := h.svc.lastDelete; !d.HasContext || version.EncodeContext(d.Context) != seen {
		t.Fatalf("service saw %+v, want the client's context", d)
	}
	rec = h.do(http.MethodGet, "/keys/k", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "two" {
		t.Fatalf("the unseen concurrent write must survive: status %d, body %q", rec.Code, rec.Body)
	}
}

func TestIfNoneMatch(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v", "")
	etag := h.do(http.MethodGet, "/keys/k", "").Header().Get("ETag")
	opaque := strings.Trim(etag, `"`)
	tests := []struct {
		header string
		want   int
	}{
		{etag, http.StatusNotModified},
		{"W/" + etag, http.StatusNotModified},
		{`"other", ` + etag, http.StatusNotModified},
		{`"a,b",W/` + etag, http.StatusNotModified},
		{"*", http.StatusNotModified},
		{`"other"`, http.StatusOK},
		{opaque, http.StatusOK},              // unquoted: malformed, matches nothing
		{`"` + opaque, http.StatusOK},        // unterminated
		{`"x` + opaque + `"`, http.StatusOK}, // a different tag
	}
	for _, tt := range tests {
		rec := h.do(http.MethodGet, "/keys/k", "", "If-None-Match", tt.header)
		if rec.Code != tt.want {
			t.Errorf("If-None-Match %s: status %d, want %d", tt.header, rec.Code, tt.want)
			continue
		}
		if tt.want == http.StatusNotModified {
			if rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag || rec.Header().Get("X-Context") == "" {
				t.Errorf("304: body %q, ETag %q, X-Context %q", rec.Body, rec.Header().Get("ETag"), rec.Header().Get("X-Context"))
			}
		}
	}

	// A new sibling changes the ETag, and the 300 honours If-None-Match too.
	h.put("k", "w", "")
	rec := h.do(http.MethodGet, "/keys/k", "", "If-None-Match", etag)
	if rec.Code != http.StatusMultipleChoices {
		t.Fatalf("stale ETag after a concurrent write: status %d, want 300", rec.Code)
	}
	rec = h.do(http.MethodGet, "/keys/k", "", "If-None-Match", rec.Header().Get("ETag"))
	if rec.Code != http.StatusNotModified {
		t.Fatalf("current ETag of a 300: status %d, want 304", rec.Code)
	}
}

func TestGetLocal(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v", "")
	rec := h.do(http.MethodGet, "/keys/k?local=true", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "v" {
		t.Fatalf("local GET: status %d, body %q", rec.Code, rec.Body)
	}
	if _, _, gets, local := h.svc.calls(); gets != 0 || local != 1 {
		t.Fatalf("local GET made %d quorum and %d local reads, want 0 and 1", gets, local)
	}
	h.do(http.MethodGet, "/keys/k?local=false", "")
	if _, _, gets, local := h.svc.calls(); gets != 1 || local != 1 {
		t.Fatalf("local=false made %d quorum and %d local reads, want 1 and 1", gets, local)
	}
	wantError(t, h.do(http.MethodGet, "/keys/k?local=maybe", ""), http.StatusBadRequest, codeBadQuery)
	wantError(t, h.do(http.MethodGet, "/keys/absent?local=true", ""), http.StatusNotFound, codeNotFound)
}

func TestQuorumParameters(t *testing.T) {
	tests := []struct {
		query string
		want  int // 0: the node's default; -1: rejected
	}{
		{"", 0},
		{"=one", 1},
		{"=quorum", 2},
		{"=all", 3},
		{"=1", 1},
		{"=2", 2},
		{"=3", 3},
		{"=03", 3},
		{"=0", -1},
		{"=4", -1},
		{"=-1", -1},
		{"=%2B2", -1},
		{"=abc", -1},
		{"=1.5", -1},
		{"=", -1},
		{"=%202", -1},
		{"=ONE", -1},
		{"=99999999999999999999999", -1},
		{"=1&%s=2", -1}, // given twice
	}
	requests := []struct {
		method, param string
		seen          func(f *fakeService) int
	}{
		{http.MethodGet, "r", func(f *fakeService) int { return f.lastGet.R }},
		{http.MethodPut, "w", func(f *fakeService) int { return f.lastPut.W }},
		{http.MethodDelete, "w", func(f *fakeService) int { return f.lastDelete.W }},
	}
	for _, rq := range requests {
		for _, tt := range tests {
			name := fmt.Sprintf("%s %s%s", rq.method, rq.param, tt.query)
			t.Run(name, func(t *testing.T) {
				h := newHarness(t)
				target := "/keys/k"
				if tt.query != "" {
					target += "?" + rq.param + strings.ReplaceAll(tt.query, "%s", rq.param)
				}
				rec := h.do(rq.method, target, "v")
				if tt.want < 0 {
					wantError(t, rec, http.StatusBadRequest, codeBadQuorum)
					if p, d, g, l := h.svc.calls(); p+d+g+l != 0 {
						t.Fatalf("a rejected request reached the service")
					}
					return
				}
				if rec.Code >= 400 && rec.Code != http.StatusNotFound {
					t.Fatalf("status %d, body %s", rec.Code, rec.Body)
				}
				if got := rq.seen(h.svc); got != tt.want {
					t.Fatalf("service saw %s=%d, want %d", rq.param, got, tt.want)
				}
			})
		}
	}
	// The other verb's parameter is not ours: ignored like any unknown one.
	h := newHarness(t)
	if rec := h.do(http.MethodPut, "/keys/k?r=abc&x=y", "v"); rec.Code != http.StatusNoContent {
		t.Fatalf("PUT with r=abc: status %d, want 204 (r is for reads)", rec.Code)
	}
}

func TestQuorumFollowsEffectiveN(t *testing.T) {
	h := newHarness(t)
	h.svc.set(func(f *fakeService) { f.quorums = node.Quorums{N: 1, R: 1, W: 1} })
	wantError(t, h.do(http.MethodPut, "/keys/k?w=2", "v"), http.StatusBadRequest, codeBadQuorum)
	h.put("k", "v", "")
	if rec := h.do(http.MethodGet, "/keys/k?r=all", ""); rec.Code != http.StatusOK || h.svc.lastGet.R != 1 {
		t.Fatalf("r=all with N=1: status %d, R %d", rec.Code, h.svc.lastGet.R)
	}
}

// TestRejectedRequests checks every bad input: its status, the JSON error
// with its code, and that nothing reached the service.
func TestRejectedRequests(t *testing.T) {
	long := strings.Repeat("k", MaxKeyBytes+1)
	goodContext := version.EncodeContext(version.Clock{{Actor: 1, Counter: 2}})
	tests := []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"empty key", req(http.MethodPut, "/keys/", "v"), 400, codeBadKey},
		{"1025-byte key", req(http.MethodPut, "/keys/"+long, "v"), 400, codeBadKey},
		{"1025 bytes after decoding", req(http.MethodPut, "/keys/%41"+long[1:], "v"), 400, codeBadKey},
		{"bad percent-encoding", raw(http.MethodPut, "/keys/a%zz"), 400, codeBadKey},
		{"truncated percent-encoding", raw(http.MethodDelete, "/keys/a%2"), 400, codeBadKey},
		{"NUL", req(http.MethodPut, "/keys/a%00b", "v"), 400, codeBadKey},
		{"GET empty key", req(http.MethodGet, "/keys/", ""), 400, codeBadKey},
		{"GET NUL", req(http.MethodGet, "/keys/%00", ""), 400, codeBadKey},
		{"GET bad percent-encoding", raw(http.MethodGet, "/keys/%zz"), 400, codeBadKey},
		{"DELETE empty key", req(http.MethodDelete, "/keys/", ""), 400, codeBadKey},
		{"DELETE long key", req(http.MethodDelete, "/keys/"+long, ""), 400, codeBadKey},
		{"DELETE NUL", req(http.MethodDelete, "/keys/%00", ""), 400, codeBadKey},
		{"cluster key empty", req(http.MethodGet, "/cluster/keys/", ""), 400, codeBadKey},
		{"cluster key NUL", req(http.MethodGet, "/cluster/keys/x%00", ""), 400, codeBadKey},
		{"cluster key long", req(http.MethodGet, "/cluster/keys/"+long, ""), 400, codeBadKey},
		{"cluster key bad encoding", raw(http.MethodGet, "/cluster/keys/%zz"), 400, codeBadKey},

		{"garbage context", req(http.MethodPut, "/keys/k", "v", "X-Context", "not a context!"), 400, codeBadContext},
		{"empty context", req(http.MethodPut, "/keys/k", "v", "X-Context", ""), 400, codeBadContext},
		{"padded context", req(http.MethodPut, "/keys/k", "v", "X-Context", goodContext+"="), 400, codeBadContext},
		{"two contexts", req(http.MethodPut, "/keys/k", "v", "X-Context", goodContext, "X-Context", goodContext), 400, codeBadContext},
		{"DELETE garbage context", req(http.MethodDelete, "/keys/k", "", "X-Context", "AAAA"), 400, codeBadContext},
		{"DELETE empty context", req(http.MethodDelete, "/keys/k", "", "X-Context", ""), 400, codeBadContext},

		{"value one byte over", req(http.MethodPut, "/keys/k", strings.Repeat("v", testMaxValue+1)), 413, codeValueTooLarge},
		{"chunked value one byte over", func() *http.Request { return chunked(strings.Repeat("v", testMaxValue+1)) }, 413, codeValueTooLarge},
		{"Content-Length over", lyingLength(testMaxValue + 1), 413, codeValueTooLarge},

		{"POST key", req(http.MethodPost, "/keys/k", "v"), 405, codeMethodNotAllowed},
		{"PATCH key", req(http.MethodPatch, "/keys/k", "v"), 405, codeMethodNotAllowed},
		{"HEAD key", req(http.MethodHead, "/keys/k", ""), 405, codeMethodNotAllowed},
		{"unknown method", req("BREW", "/keys/k", ""), 405, codeMethodNotAllowed},
		{"PUT cluster", req(http.MethodPut, "/cluster", "v"), 405, codeMethodNotAllowed},
		{"DELETE cluster key", req(http.MethodDelete, "/cluster/keys/k", ""), 405, codeMethodNotAllowed},
		{"POST ring", req(http.MethodPost, "/cluster/ring", ""), 405, codeMethodNotAllowed},
		{"POST healthz", req(http.MethodPost, "/healthz", ""), 405, codeMethodNotAllowed},
		{"PUT readyz", req(http.MethodPut, "/readyz", ""), 405, codeMethodNotAllowed},
		{"DELETE metrics", req(http.MethodDelete, "/metrics", ""), 405, codeMethodNotAllowed},
		{"POST ui", req(http.MethodPost, "/ui", ""), 405, codeMethodNotAllowed},

		{"no key segment", req(http.MethodGet, "/keys", ""), 404, codeNoRoute},
		{"unknown cluster path", req(http.MethodGet, "/cluster/nope", ""), 404, codeNoRoute},
		{"cluster trailing slash", req(http.MethodGet, "/cluster/", ""), 404, codeNoRoute},
		{"unknown path", req(http.MethodGet, "/nope", ""), 404, codeNoRoute},
		{"unknown method on unknown path", req("BREW", "/nope", ""), 404, codeNoRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			rec := h.serve(tt.req())
			wantError(t, rec, tt.status, tt.code)
			if p, d, g, l := h.svc.calls(); p+d+g+l != 0 {
				t.Fatalf("a rejected request reached the service: %d puts, %d deletes, %d gets, %d local gets", p, d, g, l)
			}
			if len(h.svc.keyInfoKeys) != 0 {
				t.Fatalf("a rejected request reached KeyInfo")
			}
			if tt.status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

func TestAllowHeader(t *testing.T) {
	h := newHarness(t)
	tests := map[string]string{
		"/keys/k":         "GET, PUT, DELETE",
		"/keys/a/b":       "GET, PUT, DELETE",
		"/cluster":        "GET",
		"/cluster/keys/k": "GET",
		"/cluster/ring":   "GET",
		"/healthz":        "GET",
		"/metrics":        "GET",
	}
	for path, want := range tests {
		rec := h.do(http.MethodPost, path, "")
		if got := rec.Header().Get("Allow"); rec.Code != http.StatusMethodNotAllowed || got != want {
			t.Errorf("POST %s: status %d, Allow %q; want 405 and %q", path, rec.Code, got, want)
		}
	}
}

func TestValueLimitBoundary(t *testing.T) {
	h := newHarness(t)
	exact := strings.Repeat("v", testMaxValue)
	if rec := h.do(http.MethodPut, "/keys/k", exact); rec.Code != http.StatusNoContent {
		t.Fatalf("value of exactly the limit: status %d, body %s", rec.Code, rec.Body)
	}
	if rec := h.serve(chunked(exact)); rec.Code != http.StatusNoContent {
		t.Fatalf("chunked value of exactly the limit: status %d, body %s", rec.Code, rec.Body)
	}
	if got := string(h.svc.lastPut.Value); got != exact {
		t.Fatalf("stored %d bytes, want %d", len(got), len(exact))
	}
}

func TestKeyAtLimit(t *testing.T) {
	h := newHarness(t)
	key := strings.Repeat("k", MaxKeyBytes-1) + "/"
	h.put(strings.Repeat("k", MaxKeyBytes-1)+"%2F", "v", "")
	if _, ok := h.svc.objects[key]; !ok {
		t.Fatal("a 1024-byte key (after decoding) was not stored under its decoded form")
	}
}

// TestKeysAreNotCleaned checks that the key is the escaped path decoded once,
// with no cleaning: each of these is its own key.
func TestKeysAreNotCleaned(t *testing.T) {
	paths := map[string]string{ // escaped path after /keys/ -> key
		"a/b":       "a/b",
		"a//b":      "a//b",
		"a/./b":     "a/./b",
		"a/../b":    "a/../b",
		".":         ".",
		"..":        "..",
		"./":        "./",
		"/":         "/",
		"//":        "//",
		"a%2F%2Fb2": "a//b2",
		"%252F":     "%2F",
		"sp%20ace":  "sp ace",
		"plus+sign": "plus+sign",
		"100%25":    "100%",
		"%E2%9C%93": "\u2713",
		"%FF%FE":    "\xff\xfe",
	}
	check := func(t *testing.T, h *harness, send func(method, escaped, body string) (int, string)) {
		for escaped, key := range paths {
			if code, _ := send(http.MethodPut, escaped, "value of "+key); code != http.StatusNoContent {
				t.Fatalf("PUT %q: status %d", escaped, code)
			}
		}
		for escaped, key := range paths {
			code, body := send(http.MethodGet, escaped, "")
			if code != http.StatusOK || body != "value of "+key {
				t.Errorf("GET %q: status %d, body %q; want the value of %q", escaped, code, body, key)
			}
		}
		if len(h.svc.objects) != len(paths) {
			t.Fatalf("stored %d keys, want %d distinct ones", len(h.svc.objects), len(paths))
		}
		for _, key := range paths {
			if _, ok := h.svc.objects[key]; !ok {
				t.Errorf("key %q was not stored as such", key)
			}
		}
		// %2F is a "/" inside the key: the same key as a literal "/".
		if code, body := send(http.MethodGet, "a%2Fb", ""); code != http.StatusOK || body != "value of a/b" {
			t.Errorf("GET a%%2Fb: status %d, body %q; want the value of a/b", code, body)
		}
	}

	t.Run("handler", func(t *testing.T) {
		h := newHarness(t)
		check(t, h, func(method, escaped, body string) (int, string) {
			rec := h.do(method, "/keys/"+escaped, body)
			return rec.Code, rec.Body.String()
		})
	})
	t.Run("server", func(t *testing.T) {
		// Through Go's server and client, which must not clean either.
		h := newHarness(t)
		srv := httptest.NewServer(h.h)
		defer srv.Close()
		check(t, h, func(method, escaped, body string) (int, string) {
			u, err := url.Parse(srv.URL + "/keys/" + escaped)
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequestWithContext(context.Background(), method, u.String(), strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		})
	})
}

func TestServiceErrors(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{node.ErrUnavailable, 503, codeUnavailable},
		{fmt.Errorf("put k: %w", node.ErrUnavailable), 503, codeUnavailable},
		{node.ErrNoReplicas, 503, codeUnavailable},
		{context.DeadlineExceeded, 503, codeTimeout},
		{fmt.Errorf("waiting for replicas: %w", context.DeadlineExceeded), 503, codeTimeout},
		{node.ErrNotReady, 503, codeNotReady},
		{node.ErrBadQuorum, 400, codeBadQuorum},
		{errors.New("disk on fire at /var/lib/dynamo"), 500, codeInternal},
	}
	for _, tt := range tests {
		for _, target := range []string{"/keys/k", "/keys/k?local=true"} {
			for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
				if strings.Contains(target, "local") && method != http.MethodGet {
					continue
				}
				t.Run(fmt.Sprintf("%s %s %v", method, target, tt.err), func(t *testing.T) {
					h := newHarness(t)
					h.svc.set(func(f *fakeService) { f.err = tt.err })
					rec := h.do(method, target, "v")
					wantError(t, rec, tt.status, tt.code)
					if tt.code == codeInternal {
						if strings.Contains(rec.Body.String(), "disk on fire") {
							t.Fatalf("internal error text leaked to the client: %s", rec.Body)
						}
						if !strings.Contains(h.log.String(), "disk on fire") {
							t.Fatalf("internal error not logged; log:\n%s", h.log)
						}
					}
				})
			}
		}
	}
}

func TestPanickingServiceAnswers500(t *testing.T) {
	h := newHarness(t)
	h.svc.set(func(f *fakeService) { f.panics = true })
	for _, target := range []string{"/keys/k", "/cluster", "/cluster/keys/k", "/cluster/ring", "/readyz", "/ui"} {
		rec := h.do(http.MethodGet, target, "")
		wantError(t, rec, http.StatusInternalServerError, codeInternal)
	}
	if !strings.Contains(h.log.String(), "fake service exploded") {
		t.Fatalf("panic not logged; log:\n%s", h.log)
	}
	// The handler survived and still serves.
	h.svc.set(func(f *fakeService) { f.panics = false })
	h.put("k", "v", "")
}

func TestRecovererAbortsStartedAnswers(t *testing.T) {
	h := recoverer(discardLogger())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		panic("half way")
	}))
	defer func() {
		if rec := recover(); rec != http.ErrAbortHandler { //nolint:errorlint
			t.Fatalf("recovered %v, want http.ErrAbortHandler so the connection is cut", rec)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

func req(method, target, body string, headers ...string) func() *http.Request {
	return func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		return withHeaders(httptest.NewRequest(method, target, rd), headers...)
	}
}

func raw(method, rawPath string) func() *http.Request {
	return func() *http.Request { return rawPathRequest(method, rawPath) }
}

// chunked is a PUT with no Content-Length, so only reading can find the size.
func chunked(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPut, "/keys/k", io.MultiReader(strings.NewReader(body)))
	r.ContentLength = -1
	return r
}

// lyingLength is a PUT announcing n bytes: it must be refused unread.
func lyingLength(n int64) func() *http.Request {
	return func() *http.Request {
		r := httptest.NewRequest(http.MethodPut, "/keys/k", readerFunc(func([]byte) (int, error) {
			panic("the body of an oversized PUT was read")
		}))
		r.ContentLength = n
		return r
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
