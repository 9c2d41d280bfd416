package containers

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"testing"
)

// maxValueBytes is the default --max-value-bytes, which docker-compose.yml
// keeps.
const maxValueBytes = 1 << 20

// TestCompose starts the repository's docker-compose.yml and checks the
// contract through HAProxy and through nginx, then takes nodes out under
// load: killed, paused, cut off, restarted one after another. One project
// serves every subtest: starting one is the slow part. Each outage runs a
// load through both load balancers at once and judges each by its own rule.
func TestCompose(t *testing.T) {
	s := upStack(t)
	for _, lb := range s.balancers() {
		t.Run(lb.name, func(t *testing.T) {
			t.Run("PutGetDelete", func(t *testing.T) { s.testPutGetDelete(t, lb.addr, lb.name) })
			t.Run("Siblings", func(t *testing.T) { s.testSiblings(t, lb.addr, lb.name) })
			t.Run("MaxValue", func(t *testing.T) { s.testMaxValue(t, lb.addr, lb.name) })
		})
	}
	// Each takes a node out under load and brings it back, leaving three
	// ready nodes for the next.
	t.Run("Kill", func(t *testing.T) { s.testOutage(t, "node3", s.kill, s.start) })
	t.Run("Pause", func(t *testing.T) { s.testOutage(t, "node2", s.pause, s.unpause) })
	t.Run("Disconnect", func(t *testing.T) { s.testNetworkCut(t, "node3") })
	t.Run("RollingRestart", func(t *testing.T) { s.testRollingRestart(t) })
}

// testPutGetDelete round-trips values through the proxy, one of them under
// a key that a proxy normalising paths would change.
func (s *stack) testPutGetDelete(t *testing.T, lb, prefix string) {
	for _, path := range []string{
		"/keys/" + prefix + "/greeting",
		"/keys/" + prefix + "/dir//x/../y%20z",
	} {
		value := []byte("hello through " + prefix)
		r := s.do(t, lb, http.MethodPut, path, value, "Content-Type", "text/plain")
		expect(t, r, http.StatusNoContent, "PUT "+path)
		expectContext(t, r, "PUT "+path)

		r = s.do(t, lb, http.MethodGet, path, nil)
		expect(t, r, http.StatusOK, "GET "+path)
		if !bytes.Equal(r.body, value) || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("GET %s: got %v, want %q as text/plain", path, r, value)
		}
		expectContext(t, r, "GET "+path)
		etag := r.header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag in %v", path, r)
		} else {
			r = s.do(t, lb, http.MethodGet, path, nil, "If-None-Match", etag)
			expect(t, r, http.StatusNotModified, "GET "+path+" If-None-Match its ETag")
		}

		r = s.do(t, lb, http.MethodDelete, path, nil)
		expect(t, r, http.StatusNoContent, "DELETE "+path)
		r = s.do(t, lb, http.MethodGet, path, nil)
		expect(t, r, http.StatusNotFound, "GET "+path+" after DELETE")
		expectContext(t, r, "GET "+path+" after DELETE")
	}
}

// testSiblings writes twice without a context, reads both versions back as
// a 300 multipart answer whose parts and headers came through the proxy
// intact, and resolves them with the answer's context.
func (s *stack) testSiblings(t *testing.T, lb, prefix string) {
	path := "/keys/" + prefix + "/color"
	written := map[string]string{"blue": "text/plain", "green": "text/x-green"}
	for value, ct := range written {
		r := s.do(t, lb, http.MethodPut, path, []byte(value), "Content-Type", ct)
		expect(t, r, http.StatusNoContent, "PUT "+value)
	}

	r := s.do(t, lb, http.MethodGet, path, nil)
	expect(t, r, http.StatusMultipleChoices, "GET after two PUTs without a context")
	ctx := expectContext(t, r, "GET siblings")
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		t.Fatalf("siblings' Content-Type %q (%v), want multipart/mixed with a boundary", r.header.Get("Content-Type"), err)
	}
	got := map[string]string{}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart body %q: %v", r.body, err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		if part.Header.Get("Last-Modified") == "" {
			t.Errorf("part %q has no Last-Modified: %v", body, part.Header)
		}
		got[string(body)] = part.Header.Get("Content-Type")
	}
	if len(got) != len(written) || got["blue"] != written["blue"] || got["green"] != written["green"] {
		t.Errorf("siblings (value: Content-Type) = %v, want %v", got, written)
	}

	r = s.do(t, lb, http.MethodPut, path, []byte("teal"), "X-Context", ctx, "Content-Type", "text/plain")
	expect(t, r, http.StatusNoContent, "PUT with the siblings' context")
	r = s.do(t, lb, http.MethodGet, path, nil)
	expect(t, r, http.StatusOK, "GET after resolving")
	if string(r.body) != "teal" {
		t.Errorf("GET after resolving: got %v, want teal", r)
	}
}

// testMaxValue sends a value of exactly the limit and one a byte over it:
// the proxy must pass both on, so that the store answers the second with
// its own 413 and stores nothing.
func (s *stack) testMaxValue(t *testing.T, lb, prefix string) {
	value := make([]byte, maxValueBytes+1)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(rng.Uint32())
	}

	path := "/keys/" + prefix + "/largest"
	r := s.do(t, lb, http.MethodPut, path, value[:maxValueBytes])
	expect(t, r, http.StatusNoContent, fmt.Sprintf("PUT of %d bytes", maxValueBytes))
	r = s.do(t, lb, http.MethodGet, path, nil)
	expect(t, r, http.StatusOK, "GET of the largest value")
	if !bytes.Equal(r.body, value[:maxValueBytes]) {
		t.Errorf("GET of the largest value: %d bytes back, not the %d written", len(r.body), maxValueBytes)
	}

	path = "/keys/" + prefix + "/too-large"
	r = s.do(t, lb, http.MethodPut, path, value)
	expectError(t, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("PUT of %d bytes", len(value)))
	r = s.do(t, lb, http.MethodGet, path, nil)
	expect(t, r, http.StatusNotFound, "GET after a rejected PUT")
}

// expect fails t unless r has the wanted status.
func expect(t *testing.T, r response, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: got %v, want status %d", what, r, want)
	}
}

// expectContext checks that r carries an X-Context in the contract's
// encoding (unpadded URL-safe base64) and returns it.
func expectContext(t *testing.T, r response, what string) string {
	t.Helper()
	ctx := r.header.Get("X-Context")
	if ctx == "" {
		t.Fatalf("%s: no X-Context in %v", what, r)
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(ctx); err != nil {
		t.Errorf("%s: X-Context %q is not unpadded URL-safe base64: %v", what, ctx, err)
	}
	return ctx
}

// expectError checks an error answer: the status, a JSON Content-Type and
// a body with non-empty "error" and "code" strings.
func expectError(t *testing.T, r response, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Errorf("%s: got %v, want status %d", what, r, want)
	}
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		t.Errorf("%s: error Content-Type %q, want application/json", what, r.header.Get("Content-Type"))
	}
	var body struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == "" || body.Code == "" {
		t.Errorf(`%s: error body %q is not JSON with a non-empty "error" and "code" (%v)`, what, r.body, err)
	}
}
