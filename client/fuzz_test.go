package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dynamo-kv/dynamo/api"
	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// siblingService serves one object to GET /keys/{key}; the handler calls
// nothing else on a read, and the embedded nil Service fails loudly if it
// ever does.
type siblingService struct {
	api.Service
	obj *version.Object
}

func (s *siblingService) Get(context.Context, node.GetRequest) (*version.Object, error) {
	return s.obj, nil
}

func (s *siblingService) Quorums() node.Quorums { return node.Quorums{N: 1, R: 1, W: 1} }

// FuzzSiblingsRoundTrip serves fuzzed siblings through the node's real
// handler and reads the answer as this package does, and with mime/multipart
// directly: both find the values, content types and write times the node
// holds, in its order. The JSON representation carries the same.
func FuzzSiblingsRoundTrip(f *testing.F) {
	f.Add([]byte("one"), "text/plain", []byte("two"), "application/json", []byte(""), "", uint8(2), int64(1715000000123456789))
	f.Add([]byte("--boundary\r\n\r\n"), "multipart/mixed; boundary=x", []byte("\r\n--"), "a\r\nb", []byte{0, 1, 2}, " spaced\t", uint8(3), int64(-1))
	f.Add([]byte("only"), "text/plain; charset=utf-8", []byte(nil), "", []byte(nil), "", uint8(1), int64(0))
	svc := &siblingService{}
	h := api.New(svc, api.Options{})
	f.Fuzz(func(t *testing.T, v1 []byte, ct1 string, v2 []byte, ct2 string, v3 []byte, ct3 string, n uint8, modified int64) {
		modified &= math.MaxInt64 // a node's clock reads after 1970
		all := []version.Sibling{
			{Value: v1, ContentType: ct1, Modified: modified},
			{Value: v2, ContentType: ct2, Modified: modified / 7},
			{Value: v3, ContentType: ct3},
		}
		siblings := all[:1+int(n%3)]
		obj := &version.Object{Clock: version.Clock{{Actor: 1, Counter: uint64(len(siblings))}}}
		for i, s := range siblings {
			s.Dot = version.Dot{Actor: 1, Counter: uint64(i + 1)}
			obj.Siblings = append(obj.Siblings, s)
		}
		svc.obj = obj

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/keys/k", nil))
		res, err := readResult("k", rec.Code, rec.Header(), rec.Body.Bytes())
		if err != nil {
			t.Fatalf("%d answer: %v", rec.Code, err)
		}
		if res.Context != version.EncodeContext(obj.Context()) || res.ETag == "" {
			t.Fatalf("context %q, ETag %q", res.Context, res.ETag)
		}
		checkSiblings(t, "client", res.Siblings, siblings)
		if len(siblings) > 1 {
			checkSiblings(t, "mime/multipart", parseMultipart(t, rec.Header().Get("Content-Type"), rec.Body.Bytes()), siblings)
		}

		rec = httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/keys/k", nil)
		req.Header.Set("Accept", "application/json")
		h.ServeHTTP(rec, req)
		var doc struct {
			Context  string `json:"context"`
			Siblings []struct {
				ContentType  string `json:"content_type"`
				Value        []byte `json:"value"`
				LastModified string `json:"last_modified"`
			} `json:"siblings"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || doc.Context != res.Context || len(doc.Siblings) != len(siblings) {
			t.Fatalf("JSON answer %q: %v", rec.Body, err)
		}
		for i, s := range siblings {
			d := doc.Siblings[i]
			// JSON strings are Unicode: encoding/json writes each byte of
			// a content type that is not UTF-8 as U+FFFD.
			var wantCT string
			raw, _ := json.Marshal(wantContentType(s.ContentType))
			if err := json.Unmarshal(raw, &wantCT); err != nil || !bytes.Equal(d.Value, s.Value) || d.ContentType != wantCT {
				t.Fatalf("JSON sibling %d: %q %q, want %q %q", i, d.Value, d.ContentType, s.Value, wantCT)
			}
			if want := jsonTime(s.Modified); d.LastModified != want {
				t.Fatalf("JSON sibling %d: last_modified %q, want %q", i, d.LastModified, want)
			}
		}
	})
}

// wantContentType is the type a reader sees for a stored one: itself
// without surrounding blanks, or the default when it is empty or cannot
// travel in a header.
func wantContentType(stored string) string {
	ct := strings.Trim(stored, " \t")
	if ct == "" || strings.ContainsFunc(ct, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return "application/octet-stream"
	}
	return ct
}

func jsonTime(modified int64) string {
	if modified == 0 {
		return ""
	}
	return time.Unix(0, modified).UTC().Format(time.RFC3339Nano)
}

func checkSiblings(t *testing.T, reader string, got []Sibling, want []version.Sibling) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s read %d siblings, want %d", reader, len(got), len(want))
	}
	for i, s := range want {
		g := got[i]
		if !bytes.Equal(g.Value, s.Value) {
			t.Fatalf("%s: sibling %d value %q, want %q", reader, i, g.Value, s.Value)
		}
		if ct := wantContentType(s.ContentType); g.ContentType != ct {
			t.Fatalf("%s: sibling %d Content-Type %q, want %q", reader, i, g.ContentType, ct)
		}
		var when time.Time
		if s.Modified != 0 {
			when = time.Unix(0, s.Modified).Truncate(time.Second)
		}
		if !g.LastModified.Equal(when) {
			t.Fatalf("%s: sibling %d Last-Modified %v, want %v", reader, i, g.LastModified, when)
		}
	}
}

// parseMultipart reads a multipart/mixed body with mime/multipart alone.
func parseMultipart(t *testing.T, contentType string, body []byte) []Sibling {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q: %v", contentType, err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []Sibling
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("part %d: %v", len(out), err)
		}
		value, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", len(out), err)
		}
		lm, _ := http.ParseTime(p.Header.Get("Last-Modified"))
		out = append(out, Sibling{Value: value, ContentType: p.Header.Get("Content-Type"), LastModified: lm})
	}
}

// FuzzReadResult reads arbitrary 200 and 300 answers. It never panics; a 300
// it accepts has siblings, and writing them out again (as a node would)
// reads back the same.
func FuzzReadResult(f *testing.F) {
	body, ct := encodeForTest(f, []Sibling{
		{Value: []byte("a"), ContentType: "text/plain", LastModified: time.Unix(1715000000, 0).UTC()},
		{Value: []byte(`{"x":1}`), ContentType: "application/json"},
	})
	f.Add(true, ct, "", body)
	f.Add(true, ct, "", body[:len(body)/2])
	f.Add(true, `multipart/mixed; boundary="a b"`, "", []byte("--a b\r\nContent-Type: x\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=41=\r\nB\r\n--a b--\r\n"))
	f.Add(true, "multipart/mixed; boundary=b", "", []byte("--b\n\n--b--"))
	f.Add(true, "text/plain", "", []byte("x"))
	f.Add(false, "", "Mon, 06 May 2024 07:08:09 GMT", []byte("value"))
	f.Add(false, "text/plain", "Monday, 06-May-24 07:08:09 GMT", []byte{})
	f.Fuzz(func(t *testing.T, multi bool, contentType, lastModified string, body []byte) {
		status := http.StatusOK
		if multi {
			status = http.StatusMultipleChoices
		}
		h := http.Header{"Content-Type": {contentType}, "Last-Modified": {lastModified}, "X-Context": {"AQA"}}
		res, err := readResult("k", status, h, body)
		if err != nil {
			if res != nil || !multi {
				t.Fatalf("%d answer: %+v, %v", status, res, err)
			}
			return
		}
		if res.Key != "k" || res.Context != "AQA" || len(res.Siblings) == 0 || (!multi && len(res.Siblings) != 1) {
			t.Fatalf("%d answer read as %+v", status, res)
		}
		for i, s := range res.Siblings {
			if s.ContentType == "" {
				t.Fatalf("sibling %d read as %+v", i, s)
			}
		}
		if !multi {
			return
		}
		body, ct := encodeForTest(t, res.Siblings)
		again, err := readResult("k", status, http.Header{"Content-Type": {ct}}, body)
		if err != nil || len(again.Siblings) != len(res.Siblings) {
			t.Fatalf("siblings %+v written again read back as %+v, %v", res.Siblings, again, err)
		}
		for i, s := range res.Siblings {
			a := again.Siblings[i]
			if !bytes.Equal(a.Value, s.Value) || a.ContentType != s.ContentType || !a.LastModified.Equal(s.LastModified) {
				t.Fatalf("sibling %d: %+v written again read back as %+v", i, s, a)
			}
		}
	})
}

// encodeForTest writes siblings as a node's 300 body.
func encodeForTest(tb testing.TB, siblings []Sibling) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, s := range siblings {
		header := textproto.MIMEHeader{"Content-Type": {s.ContentType}}
		if !s.LastModified.IsZero() {
			header.Set("Last-Modified", s.LastModified.Format(http.TimeFormat))
		}
		part, err := mw.CreatePart(header)
		if err == nil {
			_, err = part.Write(s.Value)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()})
}

// FuzzErrorFrom reads arbitrary error answers: the Error keeps the status
// and takes code and sentence from a JSON error body, and from nothing else.
func FuzzErrorFrom(f *testing.F) {
	f.Add(400, []byte(`{"error":"the key is empty","code":"bad_key"}`+"\n"), "bad_key", "the key is empty")
	f.Add(503, []byte(`<html>502 Bad Gateway</html>`), "unavailable", "")
	f.Add(409, []byte(`{"error":1,"code":["x"]}`), "too_many_siblings", "x\u2028y")
	f.Add(500, []byte(`null`), "", "")
	f.Fuzz(func(t *testing.T, status int, body []byte, code, msg string) {
		e := errorFrom("http://n.test", status, body)
		var decoded struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(body, &decoded) != nil {
			decoded.Error, decoded.Code = "", ""
		}
		if e.Status != status || e.Node != "http://n.test" || e.Code != decoded.Code || e.Message != decoded.Error {
			t.Fatalf("%d %q read as %+v", status, body, e)
		}
		if e.Error() == "" || e.Temporary() != (status == http.StatusServiceUnavailable) {
			t.Fatalf("%+v: %q, temporary %v", e, e.Error(), e.Temporary())
		}
		if !utf8.ValidString(code) || !utf8.ValidString(msg) {
			return
		}
		sent, _ := json.Marshal(map[string]string{"error": msg, "code": code})
		if back := errorFrom("n", status, sent); back.Code != code || back.Message != msg {
			t.Fatalf("sent %s, read %+v", sent, back)
		}
	})
}

// bodies answers each path with a fixed 200 body.
type bodies map[string][]byte

func (b bodies) RoundTrip(req *http.Request) (*http.Response, error) {
	body, ok := b[req.URL.Path]
	if !ok {
		return &http.Response{StatusCode: http.StatusNotFound, Body: http.NoBody, Request: req}, nil
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req}, nil
}

// FuzzRoutes builds the client's routes from arbitrary GET /cluster/ring
// and GET /cluster answers. A ring that is accepted routes any key without
// panicking, to members it names, other members up and the seeds only.
func FuzzRoutes(f *testing.F) {
	ring, _ := json.Marshal(ringAnswer{Version: "r1", Partitions: 2, N: 2, PreferenceLists: [][]string{{"a", "b"}, {"b", "a"}}})
	cluster, _ := json.Marshal(ClusterInfo{ID: "a", N: 2, R: 1, W: 1, Partitions: 2, Members: []Member{
		{ID: "a", Addr: "10.0.0.1:8080", State: "alive"}, {ID: "b", Addr: "10.0.0.2:8080", State: "dead"}, {ID: "c", Addr: "10.0.0.3:8080", State: "suspect"},
	}})
	f.Add(ring, cluster, "key")
	f.Add([]byte(`{"version":"v","partitions":1,"preference_lists":[null]}`), []byte(`{"members":[{"id":"x","addr":""},{"id":"","addr":"h:1","state":"alive"}]}`), "")
	f.Add([]byte(`{"version":"v","partitions":3,"preference_lists":[["a","a"],[],["zz"]]}`), []byte(`{"members":[{"id":"a","addr":"a:1","state":"alive"},{"id":"a","addr":"b:1","state":"left"}]}`), "a/b")
	f.Add([]byte(`{"version":"","partitions":-1}`), []byte(`[]`), "k")
	const seed = "http://seed.test"
	f.Fuzz(func(t *testing.T, ringBody, clusterBody []byte, key string) {
		hc := &http.Client{Transport: bodies{"/cluster/ring": ringBody, "/cluster": clusterBody}}
		cfg := defaultConfig()
		now := time.Unix(1715000000, 0)
		cfg.now = func() time.Time { return now }
		r := newRouter([]string{seed}, hc, cfg)
		rt, err := r.fetchFrom(seed)
		if err != nil {
			return
		}
		if rt.placer.Partitions() != len(rt.lists) {
			t.Fatalf("%d partitions, %d preference lists", rt.placer.Partitions(), len(rt.lists))
		}
		r.current.Store(rt)
		r.lastFetch = now // no refresh in the background
		known := append([]string{seed}, rt.others...)
		for _, addr := range rt.addrs {
			known = append(known, addr)
		}
		targets := r.targets(context.Background(), key)
		if len(targets) == 0 || !slices.Contains(targets, seed) {
			t.Fatalf("targets %q leave out the seed", targets)
		}
		for _, target := range targets {
			if !slices.Contains(known, target) {
				t.Fatalf("target %q is neither a member nor a seed (%q)", target, known)
			}
		}
	})
}
