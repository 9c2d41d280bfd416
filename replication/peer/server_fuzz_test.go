package peer

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/merkle"
)

// Header bits of FuzzServer's mask: which optional headers are sent.
const (
	sendFrom = 1 << iota
	sendTimeout
	sendContentType
)

// FuzzServer sends requests built from fuzzed parts to the peer server over
// a handler that always succeeds. The server answers 200 only to a body its
// route's decoder accepts, with a body the caller's decoder accepts; every
// other answer is a 4xx whose body the caller reads back as a known code.
func FuzzServer(f *testing.F) {
	tree := merkle.New(4)
	tree.Set([]byte("k"), merkle.Digest{}, merkle.Digest{1})
	h := &fakeHandler{
		fetchResp:    replication.FetchResponse{Object: testObjects()["siblings"]},
		coordResp:    replication.CoordinateResponse{Object: testObjects()["siblings"], Context: seedClock},
		rangeResp:    replication.RangeResponse{Items: []replication.RangeItem{{Key: []byte("k"), Object: testObjects()["siblings"]}}, Next: []byte("k")},
		exchangeResp: replication.ExchangeResponse{Message: tree.Start()},
	}
	s := NewServer(h)
	decoders := map[string]struct{ request, response func([]byte) error }{
		kindFetch:      {discard(decodeFetchRequest), discard(decodeFetchResponse)},
		kindStore:      {discard(decodeStoreRequest), discard(decodeStoreResponse)},
		kindCoordinate: {discard(decodeCoordinateRequest), discard(decodeCoordinateResponse)},
		kindRange:      {discard(decodeRangeRequest), discard(decodeRangeResponse)},
		kindExchange:   {discard(decodeExchangeRequest), discard(decodeExchangeResponse)},
	}

	all := uint8(sendFrom | sendTimeout | sendContentType)
	for _, seed := range []struct {
		method, path, timeout, ct string
		mask                      uint8
		body                      []byte
	}{
		{"POST", PathPrefix + kindFetch, "1.5s", contentType, all, appendFetchRequest(nil, replication.FetchRequest{Partition: 3, Key: []byte("k")})},
		{"POST", PathPrefix + kindStore, "", "", sendFrom, appendStoreRequest(nil, replication.StoreRequest{Key: []byte("k"), Object: testObjects()["siblings"], HintFor: "c"})},
		{"POST", PathPrefix + kindCoordinate, "250ms", contentType + "; x=y", all, appendCoordinateRequest(nil, replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("k"), Value: []byte("v"), HasContext: true, Context: seedClock})},
		{"POST", PathPrefix + kindRange, "0s", contentType, all, appendRangeRequest(nil, replication.RangeRequest{Partition: 1, MaxBytes: 1 << 20})},
		{"POST", PathPrefix + kindExchange, "-1s", "application/json", all, appendExchangeRequest(nil, replication.ExchangeRequest{Message: tree.Start()})},
		{"GET", PathPrefix + kindFetch, "", "", sendFrom, nil},
		{"POST", "/peer/v2/fetch", "", "", sendFrom, nil},
		{"POST", PathPrefix + kindFetch, "soon", "", sendFrom | sendTimeout, []byte{0}},
	} {
		f.Add(seed.method, seed.path, "node-a", seed.timeout, seed.ct, seed.mask, seed.body)
	}

	f.Fuzz(func(t *testing.T, method, path, from, timeout, ct string, mask uint8, body []byte) {
		req, err := http.NewRequest(method, "http://peer.test/"+strings.TrimPrefix(path, "/"), bytes.NewReader(body))
		if err != nil || req.URL.Host != "peer.test" {
			return // not a request a peer could send
		}
		for _, hv := range []struct {
			bit         uint8
			name, value string
		}{{sendFrom, HeaderFrom, from}, {sendTimeout, HeaderTimeout, timeout}, {sendContentType, "Content-Type", ct}} {
			if mask&hv.bit == 0 {
				continue
			}
			if !validHeaderValue(hv.value) {
				return // Go's server refuses the request before any handler
			}
			req.Header.Set(hv.name, strings.Trim(hv.value, " \t"))
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		resp := rec.Result()
		answer := bytes.Clone(rec.Body.Bytes())

		kind, _ := strings.CutPrefix(req.URL.Path, PathPrefix)
		dec, known := decoders[kind]
		if resp.StatusCode == http.StatusOK {
			if !known || !strings.HasPrefix(req.URL.Path, PathPrefix) {
				t.Fatalf("%s %s: 200 from no route", method, req.URL.Path)
			}
			if err := dec.request(body); err != nil {
				t.Fatalf("%s: 200 to a body its decoder refuses: %v", kind, err)
			}
			if err := dec.response(answer); err != nil {
				t.Fatalf("%s: the answer does not decode: %v", kind, err)
			}
			return
		}
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("%s %s: status %d %q", method, req.URL.Path, resp.StatusCode, answer)
		}
		var re *RemoteError
		if !errors.As(remoteError("b", resp), &re) || !isRequestCode(re.Code) || re.Status != resp.StatusCode {
			t.Fatalf("%s %s: %d %q reads back as %+v", method, req.URL.Path, resp.StatusCode, answer, re)
		}
	})
}

// FuzzRemoteError reads arbitrary error answers as a caller does, and
// checks that every error the server writes reads back as written.
func FuzzRemoteError(f *testing.F) {
	f.Add(503, CodeUnavailable, "not enough replicas", []byte("unavailable\nnot enough replicas"))
	f.Add(400, CodeBadRequest, "peer: malformed message: trailing bytes", []byte("<html>bad gateway</html>"))
	f.Add(409, CodeNotReplica, "", []byte("not_replica\n"))
	f.Add(502, "Bad-Code", "x\ny", []byte("\n\n"))
	f.Add(500, "", strings.Repeat("m", maxErrorMessage+1), []byte(strings.Repeat("internal\n", 1000)))
	f.Fuzz(func(t *testing.T, status int, code, msg string, raw []byte) {
		if status < 100 || status > 999 {
			status = 500
		}
		got := readError(status, raw)
		switch {
		case got.Status != status || got.Node != "b":
			t.Fatalf("%+v: status or node lost", got)
		case got.Code != "" && !isCodeWord(got.Code):
			t.Fatalf("%q read as code %q", raw, got.Code)
		case (got.Message == "" && http.StatusText(status) != "") || len(got.Message) > maxErrorMessage+64:
			t.Fatalf("%q read as a message of %d bytes", raw, len(got.Message))
		case got.Code == "" && got.Unwrap() != nil:
			t.Fatalf("%q without a code unwraps to %v", raw, got.Unwrap())
		}

		// What writeError sends reads back as sent.
		if !isCodeWord(code) || msg == "" || len(msg) > maxErrorMessage {
			return
		}
		rec := httptest.NewRecorder()
		writeError(rec, status, code, msg)
		back := readError(status, rec.Body.Bytes())
		if back.Code != code || back.Message != msg {
			t.Fatalf("wrote %q, %q; read %q, %q", code, msg, back.Code, back.Message)
		}
	})
}

func readError(status int, body []byte) *RemoteError {
	resp := &http.Response{StatusCode: status, Body: io.NopCloser(bytes.NewReader(body))}
	return remoteError("b", resp).(*RemoteError)
}

// discard adapts a decoder to one that reports only its error.
func discard[T any](decode func([]byte) (T, error)) func([]byte) error {
	return func(b []byte) error { _, err := decode(b); return err }
}

// isRequestCode reports whether code is one the server answers a request
// with before any handler runs.
func isRequestCode(code string) bool {
	switch code {
	case CodeBadRequest, CodeNotFound, CodeMethodNotAllowed, CodeTooLarge, CodeUnsupportedMediaType:
		return true
	}
	return false
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
