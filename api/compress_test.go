package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/dynamo-kv/dynamo/node"
)

// jsonValue is a compressible value of at least n bytes.
func jsonValue(n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"user-%d","email":"user-%d@example.com","active":%t},`, i, i, i, i%3 == 0)
	}
	return strings.TrimSuffix(b.String(), ",") + "]"
}

// seed stores value under key straight in the fake service, past the
// harness's small value limit.
func (h *harness) seed(key, value, contentType string) {
	h.t.Helper()
	if _, err := h.svc.Put(context.Background(), node.PutRequest{Key: []byte(key), Value: []byte(value), ContentType: contentType}); err != nil {
		h.t.Fatal(err)
	}
}

func gunzip(t *testing.T, body []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

func wantVary(t *testing.T, h http.Header) {
	t.Helper()
	if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Accept-Encoding") {
		t.Fatalf("Vary = %q, want Accept-Encoding", h.Values("Vary"))
	}
}

func TestGzipOnlyForClientsThatAcceptIt(t *testing.T) {
	h := newHarness(t)
	value := jsonValue(16 << 10)
	h.seed("doc", value, "application/json")

	plain := h.do(http.MethodGet, "/keys/doc", "")
	if plain.Code != http.StatusOK || plain.Body.String() != value {
		t.Fatalf("plain GET: status %d, %d bytes", plain.Code, plain.Body.Len())
	}
	ph := plain.Header()
	if ph.Get("Content-Encoding") != "" || ph.Get("Content-Length") != strconv.Itoa(len(value)) {
		t.Fatalf("plain GET: Content-Encoding %q, Content-Length %q", ph.Get("Content-Encoding"), ph.Get("Content-Length"))
	}
	wantVary(t, ph)
	etag := ph.Get("ETag")
	if strings.HasPrefix(etag, "W/") {
		t.Fatalf("plain answer has a weak ETag %q", etag)
	}

	for _, accept := range []string{"gzip", "deflate, gzip;q=0.8, br", "GZIP"} {
		gz := h.do(http.MethodGet, "/keys/doc", "", "Accept-Encoding", accept)
		gh := gz.Header()
		if gz.Code != http.StatusOK || gh.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Accept-Encoding %q: status %d, Content-Encoding %q", accept, gz.Code, gh.Get("Content-Encoding"))
		}
		if got := gunzip(t, gz.Body.Bytes()); string(got) != value {
			t.Fatalf("Accept-Encoding %q: the body decodes to %d bytes, want the %d-byte value", accept, len(got), len(value))
		}
		if gz.Body.Len() > len(value)/4 {
			t.Fatalf("Accept-Encoding %q: %d bytes gzipped from %d", accept, gz.Body.Len(), len(value))
		}
		// The plain length must not describe the gzipped body.
		if cl := gh.Get("Content-Length"); cl != "" {
			t.Fatalf("Accept-Encoding %q: Content-Length %q on a compressed body", accept, cl)
		}
		wantVary(t, gh)
		if gh.Get("ETag") != "W/"+etag || gh.Get("Content-Type") != "application/json" || gh.Get("X-Context") != ph.Get("X-Context") {
			t.Fatalf("Accept-Encoding %q: ETag %q, Content-Type %q; want W/%s, application/json and the plain answer's X-Context",
				accept, gh.Get("ETag"), gh.Get("Content-Type"), etag)
		}
	}

	for _, accept := range []string{"gzip;q=0", "identity", "br"} {
		rec := h.do(http.MethodGet, "/keys/doc", "", "Accept-Encoding", accept)
		if rec.Header().Get("Content-Encoding") != "" || rec.Body.String() != value || rec.Header().Get("ETag") != etag {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, ETag %q; want a plain answer",
				accept, rec.Header().Get("Content-Encoding"), rec.Header().Get("ETag"))
		}
	}
}

// Over a real connection, the headers on the wire match the body sent.
func TestGzipOnTheWire(t *testing.T) {
	h := newHarness(t)
	value := jsonValue(256 << 10)
	h.seed("doc", value, "application/json")
	srv := httptest.NewServer(h.h)
	defer srv.Close()
	// A client that does its own decoding, to see what was sent.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	get := func(accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/keys/doc", nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}

	resp, body := get("gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || string(gunzip(t, body)) != value {
		t.Fatalf("gzip client: Content-Encoding %q, body does not decode to the value", resp.Header.Get("Content-Encoding"))
	}
	if resp.ContentLength != -1 && resp.ContentLength != int64(len(body)) {
		t.Fatalf("gzip client: Content-Length %d for a %d-byte body", resp.ContentLength, len(body))
	}
	t.Logf("%d-byte JSON value sent as %d gzipped bytes", len(value), len(body))

	resp, body = get("")
	if resp.Header.Get("Content-Encoding") != "" || resp.ContentLength != int64(len(value)) || string(body) != value {
		t.Fatalf("plain client: Content-Encoding %q, Content-Length %d, %d bytes", resp.Header.Get("Content-Encoding"), resp.ContentLength, len(body))
	}

	// Go's own client asks for gzip and decodes it transparently.
	resp, err := http.Get(srv.URL + "/keys/doc")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !resp.Uncompressed || string(body) != value {
		t.Fatalf("default Go client: uncompressed %v, %d bytes", resp.Uncompressed, len(body))
	}
}

func TestIfNoneMatchWithAndWithoutGzip(t *testing.T) {
	h := newHarness(t)
	h.seed("doc", jsonValue(8<<10), "application/json")
	etag := h.do(http.MethodGet, "/keys/doc", "").Header().Get("ETag")
	weak := h.do(http.MethodGet, "/keys/doc", "", "Accept-Encoding", "gzip").Header().Get("ETag")
	if weak != "W/"+etag {
		t.Fatalf("compressed ETag %q, want W/%s", weak, etag)
	}

	// Either form revalidates, for either client; the 304 has no body to
	// encode and carries the strong tag.
	for _, tc := range []struct {
		name, accept, ifNoneMatch string
	}{
		{"plain client, its strong tag", "", etag},
		{"gzip client, its weak tag", "gzip", weak},
		{"gzip client, the strong tag", "gzip", etag},
		{"plain client, the weak tag", "", weak},
		{"gzip client, a list", "gzip", `"other", ` + weak},
		{"gzip client, any", "gzip", "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := []string{"If-None-Match", tc.ifNoneMatch}
			if tc.accept != "" {
				headers = append(headers, "Accept-Encoding", tc.accept)
			}
			rec := h.do(http.MethodGet, "/keys/doc", "", headers...)
			hd := rec.Header()
			if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
				t.Fatalf("status %d with %d body bytes, want an empty 304", rec.Code, rec.Body.Len())
			}
			if hd.Get("Content-Encoding") != "" || hd.Get("Content-Length") != "" || hd.Get("ETag") != etag {
				t.Fatalf("Content-Encoding %q, Content-Length %q, ETag %q; want none, none, %s",
					hd.Get("Content-Encoding"), hd.Get("Content-Length"), hd.Get("ETag"), etag)
			}
			wantVary(t, hd)
		})
	}

	// A new write: neither form of the old tag matches any more.
	h.seed("doc", jsonValue(9<<10), "application/json")
	for _, tag := range []string{etag, weak} {
		rec := h.do(http.MethodGet, "/keys/doc", "", "If-None-Match", tag, "Accept-Encoding", "gzip")
		if rec.Code != http.StatusMultipleChoices || rec.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("If-None-Match %s after a write: status %d, Content-Encoding %q; want a gzipped 300",
				tag, rec.Code, rec.Header().Get("Content-Encoding"))
		}
	}
}

func TestSiblingsGzipped(t *testing.T) {
	h := newHarness(t)
	a, b := jsonValue(4<<10), jsonValue(5<<10)
	h.seed("k", a, "application/json")
	h.seed("k", b, "text/plain")
	rec := h.do(http.MethodGet, "/keys/k", "", "Accept-Encoding", "gzip")
	if rec.Code != http.StatusMultipleChoices || rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d, Content-Encoding %q; want a gzipped 300", rec.Code, rec.Header().Get("Content-Encoding"))
	}
	parts := readSiblings(t, rec.Header().Get("Content-Type"), bytes.NewReader(gunzip(t, rec.Body.Bytes())))
	if len(parts) != 2 || parts[0].body != a || parts[1].body != b || parts[1].contentType != "text/plain" {
		t.Fatalf("got %d parts, want both siblings intact", len(parts))
	}
}

func TestGzipLeavesAloneWhatItShould(t *testing.T) {
	h := newHarness(t)
	h.seed("photo", jsonValue(8<<10), "image/jpeg")
	h.seed("small", jsonValue(compressMinBytes-100), "application/json")
	h.seed("gone", "x", "")
	h.do(http.MethodDelete, "/keys/gone", "")

	for _, tc := range []struct {
		name, method, target string
		status               int
	}{
		{"already compressed content type", http.MethodGet, "/keys/photo", http.StatusOK},
		{"under the minimum size", http.MethodGet, "/keys/small", http.StatusOK},
		{"error answer", http.MethodGet, "/keys/gone", http.StatusNotFound},
		{"no body", http.MethodPut, "/keys/new", http.StatusNoContent},
		{"HEAD", http.MethodHead, "/keys/photo", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == http.MethodPut {
				body = "v"
			}
			rec := h.do(tc.method, tc.target, body, "Accept-Encoding", "gzip")
			if rec.Code != tc.status || rec.Header().Get("Content-Encoding") != "" {
				t.Fatalf("status %d, Content-Encoding %q; want %d, none", rec.Code, rec.Header().Get("Content-Encoding"), tc.status)
			}
			if cl := rec.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(rec.Body.Len()) {
				t.Fatalf("Content-Length %s for a %d-byte body", cl, rec.Body.Len())
			}
			if etag := rec.Header().Get("ETag"); strings.HasPrefix(etag, "W/") {
				t.Fatalf("uncompressed answer with a weak ETag %q", etag)
			}
		})
	}
}

// promhttp compresses /metrics itself; the body must be gzipped once.
func TestMetricsGzippedOnce(t *testing.T) {
	h := newHarness(t)
	for range 20 {
		h.do(http.MethodGet, "/healthz", "")
	}
	rec := h.do(http.MethodGet, "/metrics", "", "Accept-Encoding", "gzip")
	if enc := rec.Header().Values("Content-Encoding"); len(enc) != 1 || enc[0] != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip once", enc)
	}
	text := gunzip(t, rec.Body.Bytes())
	if !bytes.Contains(text, []byte("# TYPE dynamo_http_requests_total counter")) {
		t.Fatalf("the gunzipped body is not the text exposition:\n%.200q", text)
	}

	rec = h.do(http.MethodGet, "/metrics", "")
	if rec.Header().Get("Content-Encoding") != "" || !strings.Contains(rec.Body.String(), "dynamo_http_requests_total") {
		t.Fatalf("plain client: Content-Encoding %q", rec.Header().Get("Content-Encoding"))
	}
}
