package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
)

// fuzzMaxValue keeps the handler fuzzer's writes small: bodies past it are
// the 413 path, not slow fsyncs of large values.
const fuzzMaxValue = 1 << 10

// notLeaving is a real node whose Leave is only counted: a fuzzed POST
// /cluster/leave would otherwise hand the node's data off and turn every
// later input into a 503.
type notLeaving struct {
	*node.Node
	leaves atomic.Int64
}

func (s *notLeaving) Leave() error { s.leaves.Add(1); return nil }

// Header bits of FuzzHandler's mask: which optional headers are sent.
const (
	sendContext = 1 << iota
	sendContentType
	sendIfNoneMatch
	sendAccept
	sendContextTwice
)

// FuzzHandler throws requests built from fuzzed parts at the real handler
// over a real single node. Whatever arrives, the answer is never a 5xx other
// than 503, and every 4xx is the contract's JSON error body.
func FuzzHandler(f *testing.F) {
	cluster := nodetest.MakeCluster(f, 1, nodetest.DefaultConfig())
	svc := &notLeaving{Node: cluster.Node("node-0")}
	var logs lockedBuffer
	h := New(svc, Options{
		MaxValueBytes: fuzzMaxValue,
		Logger:        slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	serve := func(req *http.Request) *httptest.ResponseRecorder {
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(ctx))
		return rec
	}

	// Real answers to seed from: a value, siblings, a tombstone.
	put := func(key, value, contentType string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPut, "/keys/"+key, strings.NewReader(value))
		req.Header.Set("Content-Type", contentType)
		rec := serve(req)
		if rec.Code != http.StatusNoContent {
			f.Fatalf("seeding PUT %s: %d %s", key, rec.Code, rec.Body)
		}
		return rec
	}
	ctxA := put("a", "value of a", "text/plain").Header().Get("X-Context")
	put("cart", `{"items":["milk"]}`, "application/json")
	put("cart", "eggs", "text/plain") // blind: a sibling
	gone := put("gone", "x", "").Header().Get("X-Context")
	req := httptest.NewRequest(http.MethodDelete, "/keys/gone", nil)
	req.Header.Set("X-Context", gone)
	serve(req)
	etagA := serve(httptest.NewRequest(http.MethodGet, "/keys/a", nil)).Header().Get("ETag")
	cart := serve(httptest.NewRequest(http.MethodGet, "/keys/cart", nil))

	all := uint8(sendContext | sendContentType | sendIfNoneMatch | sendAccept)
	for _, s := range []struct {
		method, path, query string
		mask                uint8
		xctx, ct, inm, acc  string
		body                string
	}{
		{"GET", "/keys/a", "", sendIfNoneMatch, "", "", etagA, "", ""},
		{"GET", "/keys/cart", "r=1", sendAccept, "", "", "", "application/json", ""},
		{"GET", "/keys/cart", "local=true", sendAccept | sendIfNoneMatch, "", "", cart.Header().Get("ETag"), "multipart/mixed;q=0.5, application/*", ""},
		{"GET", "/keys/gone", "r=quorum", 0, "", "", "", "", ""},
		{"PUT", "/keys/a", "w=all", all, ctxA, "text/plain; charset=utf-8", "*", "*/*", "new value"},
		{"PUT", "/keys/cart", "", sendContext | sendContentType, cart.Header().Get("X-Context"), "application/json", "", "", `{"items":[]}`},
		{"PUT", "/keys/a%2Fb%00", "w=2&w=1", sendContext, "AQA", "", "", "", "v"},
		{"PUT", "/keys/big", "", 0, "", "", "", "", strings.Repeat("v", fuzzMaxValue+1)},
		{"DELETE", "/keys/a", "w=one", sendContext | sendContextTwice, ctxA, "", "", "", ""},
		{"DELETE", "/keys/%zz", "", 0, "", "", "", "", ""},
		{"GET", "/cluster", "", 0, "", "", "", "", ""},
		{"GET", "/cluster/keys/a%252F", "", 0, "", "", "", "", ""},
		{"GET", "/cluster/ring", "", 0, "", "", "", "", ""},
		{"POST", "/cluster/remove/node-0", "", 0, "", "", "", "", ""},
		{"POST", "/cluster/remove/%6Eode-9", "", 0, "", "", "", "", ""},
		{"POST", "/cluster/leave", "", 0, "", "", "", "", ""},
		{"PATCH", "/keys/a", "", 0, "", "", "", "", ""},
		{"HEAD", "/cluster/ring", "", 0, "", "", "", "", ""},
		{"GET", "/readyz", "", 0, "", "", "", "", ""},
		{"GET", "/nope", "x=%", 0, "", "", "", "", ""},
	} {
		f.Add(s.method, s.path, s.query, s.mask, s.xctx, s.ct, s.inm, s.acc, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, method, path, query string, mask uint8, xctx, ct, inm, accept string, body []byte) {
		target := "http://dynamo.test" + "/" + strings.TrimPrefix(path, "/")
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil || req.URL.Host != "dynamo.test" {
			return // not a request a client could send
		}
		req.RequestURI = req.URL.RequestURI()
		req.RemoteAddr = "192.0.2.1:1234"
		for _, hv := range []struct {
			bit         uint8
			name, value string
		}{
			{sendContext, "X-Context", xctx},
			{sendContextTwice, "X-Context", xctx},
			{sendContentType, "Content-Type", ct},
			{sendIfNoneMatch, "If-None-Match", inm},
			{sendAccept, "Accept", accept},
		} {
			if mask&hv.bit == 0 {
				continue
			}
			if !validHeaderValue(hv.value) {
				return // Go's server refuses the request before any handler
			}
			// As Go's server does, surrounding blanks are not part of the value.
			req.Header.Add(hv.name, strings.Trim(hv.value, " \t"))
		}

		rec := serve(req)
		switch {
		case rec.Code == http.StatusServiceUnavailable:
		case rec.Code >= 500:
			t.Fatalf("%s %s: %d %s\nlog: %s", method, req.RequestURI, rec.Code, rec.Body, logs.String())
		case rec.Code >= 400 && (strings.HasPrefix(req.URL.Path, "/keys") || strings.HasPrefix(req.URL.Path, "/cluster")):
			if msg := errorBodyProblem(rec); msg != "" {
				t.Fatalf("%s %s: %d with %s: %q", method, req.RequestURI, rec.Code, msg, rec.Body)
			}
		}
	})
}

// validHeaderValue reports whether v may be a header field value on the
// wire (RFC 9110 section 5.5): no control bytes but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// errorBodyProblem says what is wrong with a 4xx answer's body, "" when it
// is the contract's {"error": sentence, "code": word}.
func errorBodyProblem(rec *httptest.ResponseRecorder) string {
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		return "Content-Type " + ct
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		return "a body that is not JSON"
	}
	msg, _ := body["error"].(string)
	code, _ := body["code"].(string)
	if len(body) != 2 || msg == "" || code == "" {
		return "a body that is not exactly error and code"
	}
	return ""
}
