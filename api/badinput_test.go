package api

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// badInputBodyTimeout is the test server's body deadline, the one setting
// it changes from production: the slow-body cases wait for it.
const badInputBodyTimeout = 400 * time.Millisecond

// badInputExchangeTimeout fails a case whose answer never comes, instead of
// hanging the test.
const badInputExchangeTimeout = 20 * time.Second

// badInputServer is the server cmd/dynamo runs (NewServer, with everything
// but the body deadline at production values), serving New over a fake
// service with the production value limit, on 127.0.0.1.
type badInputServer struct {
	svc  *fakeService
	addr string
}

func startBadInputServer(t *testing.T) *badInputServer {
	t.Helper()
	svc := newFakeService()
	// Remove finds no member, as a real node does for made-up ids.
	svc.removeErr = node.ErrUnknownMember
	h := New(svc, Options{Registry: prometheus.NewRegistry(), Logger: discardLogger()})
	srv := NewServer(h, ServerOptions{BodyTimeout: badInputBodyTimeout})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &badInputServer{svc: svc, addr: ln.Addr().String()}
}

// snapshot returns every stored object's encoding by key. Each must also
// decode to itself: a version that breaks the object invariants (say, a dot
// with counter 0) would make a real node's key unreadable.
func (s *badInputServer) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	s.svc.set(func(f *fakeService) {
		for k, obj := range f.objects {
			enc := obj.Marshal()
			back, err := version.Unmarshal(enc)
			if err != nil || !back.Equal(obj) {
				t.Errorf("stored object of %q is invalid: %v (%s)", k, err, obj.Clock)
			}
			out[k] = string(enc)
		}
	})
	return out
}

// storeChanges lists the keys whose stored state differs between two
// snapshots, except the one key a case was meant to write.
func storeChanges(before, after map[string]string, except string) []string {
	var changed []string
	for k, v := range after {
		if k != except && before[k] != v {
			changed = append(changed, fmt.Sprintf("%.40q", k))
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok && k != except {
			changed = append(changed, fmt.Sprintf("%.40q (gone)", k))
		}
	}
	sort.Strings(changed)
	return changed
}

// badInputAnswer is what a raw exchange got back.
type badInputAnswer struct {
	resp *http.Response
	body []byte
	took time.Duration // from the first byte sent to the end of the answer
	// hungUp reports that the server closed the connection after the
	// answer; every raw request asks it to (Connection: close), and the
	// slow-body ones rely on it.
	hungUp bool
}

// exchange dials the server, lets send write the request (concurrently: the
// server may answer and hang up before it has all of it, so send ignores
// write errors), and reads one answer to method.
func (s *badInputServer) exchange(t *testing.T, method string, send func(net.Conn)) badInputAnswer {
	t.Helper()
	return s.exchangeAfter(t, 0, method, send)
}

// exchangeAfter is exchange for a connection on which send first sends
// earlier good requests: their answers, which must be 2xx, are read and
// dropped before the one returned.
func (s *badInputServer) exchangeAfter(t *testing.T, earlier int, method string, send func(net.Conn)) badInputAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if err := conn.SetReadDeadline(start.Add(badInputExchangeTimeout)); err != nil {
		t.Fatal(err)
	}
	go send(conn)
	br := bufio.NewReader(conn)
	for i := 0; i < earlier; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer to earlier request %d: %v", i+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("earlier request %d: status %d, body %q, %v", i+1, resp.StatusCode, body, err)
		}
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no answer after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	a := badInputAnswer{resp: resp, body: body, took: time.Since(start)}
	conn.SetReadDeadline(time.Now().Add(badInputExchangeTimeout)) //nolint:errcheck
	_, err = br.ReadByte()
	var ne net.Error
	a.hungUp = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	return a
}

// rawRequest renders an HTTP/1.1 request as a client would send it, Host and
// Connection: close included, and Content-Length when body is not empty or
// the method is PUT. headers are name, value pairs written as given.
func rawRequest(method, target, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: dynamo.test\r\nConnection: close\r\n", method, target)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	if body != "" || method == http.MethodPut {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.String()
}

// writeAll is a send that writes raw at once.
func writeAll(raw string) func(net.Conn) {
	return func(c net.Conn) { io.WriteString(c, raw) } //nolint:errcheck // see exchange
}

// stallAfter is a send that writes raw and then nothing, never closing.
func stallAfter(raw string) func(net.Conn) { return writeAll(raw) }

// trickle is a send that writes head, then one byte of body every 50 ms
// until the server hangs up.
func trickle(head string, body string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(body); i++ {
			<-tick.C // the client's pace, not a wait for a condition
			if _, err := c.Write([]byte{body[i]}); err != nil {
				return
			}
		}
	}
}

// badInputCase is one request of the table and what must come back.
type badInputCase struct {
	name string
	// raw is the request; send replaces it for requests written in parts.
	raw  string
	send func(net.Conn)
	// method is the request's method when it is HEAD (an answer without a
	// body); otherwise unused.
	method string
	// earlier is how many good requests send writes on the connection
	// before the one under test.
	earlier int
	status  int
	// code is the error code of a 4xx or 5xx answer.
	code string
	// allow is the Allow header a 405 must carry.
	allow string
	// stores is the key a case that is accepted writes; every other case
	// leaves everything stored as it was.
	stores string
	// slow marks the cases answered only at the body deadline.
	slow bool
}

// TestBadInputOverHTTP throws malformed requests at every route of the
// contract, over TCP at the production server (NewServer): bad and forged
// contexts, bad keys, quorums and queries, values at and over the limit,
// oversized headers, slow bodies, wrong methods, and requests net/http itself
// refuses. Each must get its status and, when an error, the JSON body with
// its code, and must leave every stored object as it was.
func TestBadInputOverHTTP(t *testing.T) {
	s := startBadInputServer(t)

	// What is stored first, so that a change is visible: a plain value, a
	// key with siblings, a deleted key, and a key with a slash.
	seed := func(method, target, body string, headers ...string) http.Header {
		t.Helper()
		a := s.exchange(t, method, writeAll(rawRequest(method, target, body, headers...)))
		if a.resp.StatusCode != http.StatusNoContent {
			t.Fatalf("seeding %s %s: status %d, body %s", method, target, a.resp.StatusCode, a.body)
		}
		return a.resp.Header
	}
	plainCtx := seed(http.MethodPut, "/keys/plain", "v1", "Content-Type", "text/plain").Get("X-Context")
	seed(http.MethodPut, "/keys/siblings", "a")
	seed(http.MethodPut, "/keys/siblings", "b")
	gone := seed(http.MethodPut, "/keys/deleted", "gone").Get("X-Context")
	seed(http.MethodDelete, "/keys/deleted", "", "X-Context", gone)
	seed(http.MethodPut, "/keys/dir/key", "x")
	if a := s.exchange(t, http.MethodGet, writeAll(rawRequest(http.MethodGet, "/keys/siblings", ""))); a.resp.StatusCode != http.StatusMultipleChoices {
		t.Fatalf("seeded siblings: GET answers %d", a.resp.StatusCode)
	}
	if a := s.exchange(t, http.MethodGet, writeAll(rawRequest(http.MethodGet, "/keys/deleted", ""))); a.resp.StatusCode != http.StatusNotFound || a.resp.Header.Get("X-Context") == "" {
		t.Fatalf("seeded tombstone: GET answers %d, X-Context %q", a.resp.StatusCode, a.resp.Header.Get("X-Context"))
	}

	// Contexts: real ones, cut ones and forged ones.
	plainRaw, err := base64.RawURLEncoding.DecodeString(plainCtx)
	if err != nil || len(plainRaw) < 4 {
		t.Fatalf("X-Context %q of a PUT is not a context: %v", plainCtx, err)
	}
	format := plainRaw[0]
	enc := base64.RawURLEncoding.EncodeToString
	forged := func(entries ...version.Entry) string {
		return enc(version.AppendClock([]byte{format}, version.Clock(entries)))
	}
	padded := base64.URLEncoding.EncodeToString(plainRaw)
	if padded == plainCtx {
		padded += "="
	}
	// An actor whose token has '-' and '_', so the standard alphabet
	// spells it differently.
	urlAlphabet := forged(version.Entry{Actor: 0xfbfffbfffbfffbff, Counter: 1})
	stdAlphabet := strings.NewReplacer("-", "+", "_", "/").Replace(urlAlphabet)
	if stdAlphabet == urlAlphabet {
		t.Fatalf("context %q has no character the two alphabets spell differently", urlAlphabet)
	}
	hugeCount := enc(binary.AppendUvarint([]byte{format}, math.MaxUint64))
	countOverLimit := enc(binary.AppendUvarint([]byte{format}, version.MaxClockEntries+1))
	countOverBytes := enc(append(binary.AppendUvarint([]byte{format}, 3), make([]byte, 9)...))
	overlong := enc([]byte{format, 0x81, 0x00})
	unsorted := forged(version.Entry{Actor: 9, Counter: 1}, version.Entry{Actor: 3, Counter: 1})
	zeroCounter := forged(version.Entry{Actor: 3, Counter: 0})
	trailing := enc(append(append([]byte(nil), plainRaw...), 0))
	wrongFormat := enc(append([]byte{format + 7}, plainRaw[1:]...))
	garbage := enc([]byte("this is base64, but of no context at all"))
	tooLong := strings.Repeat("A", version.MaxContextLen+1)
	// Counters no store issues: the next write by that actor would wrap.
	maxCounter := forged(version.Entry{Actor: testActor, Counter: math.MaxUint64})
	nearMaxCounter := forged(version.Entry{Actor: testActor, Counter: math.MaxUint64 - 1})
	overBound := forged(version.Entry{Actor: 1, Counter: maxContextCounter + 1})
	atBound := forged(version.Entry{Actor: testActor, Counter: maxContextCounter})

	const limit = DefaultMaxValueBytes
	exact := strings.Repeat("v", limit)
	over := exact + "v"
	key1024 := strings.Repeat("k", MaxKeyBytes)
	key1025 := key1024 + "k"
	hugeHeader := strings.Repeat("h", DefaultMaxHeaderBytes+8<<10)
	bigButAllowed := strings.Repeat("h", DefaultMaxHeaderBytes/2)
	var manyHeaders []string
	for i := 0; i < 40; i++ {
		manyHeaders = append(manyHeaders, fmt.Sprintf("X-Filler-%d", i), strings.Repeat("f", 32<<10))
	}
	chunk := func(body string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) }
	chunkedPut := func(key, body string) string {
		return "PUT /keys/" + key + " HTTP/1.1\r\nHost: dynamo.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(body)
	}

	const (
		keysAllow    = "GET, PUT, DELETE"
		getAllow     = "GET"
		postAllow    = "POST"
		put, get     = http.MethodPut, http.MethodGet
		del, post    = http.MethodDelete, http.MethodPost
		badCtx       = codeBadContext
		badKey       = codeBadKey
		badQuorum    = codeBadQuorum
		badRequest   = codeBadRequest
		notAllowed   = codeMethodNotAllowed
		tooLarge     = codeValueTooLarge
		headersLarge = codeHeadersTooLarge
	)
	r := rawRequest
	ctxPut := func(ctx string) string { return r(put, "/keys/plain", "v2", "X-Context", ctx) }
	ctxDelete := func(key, ctx string) string { return r(del, "/keys/"+key, "", "X-Context", ctx) }

	cases := []badInputCase{
		// X-Context on PUT and DELETE.
		{name: "context not base64", raw: ctxPut("not a context!"), status: 400, code: badCtx},
		{name: "context padded", raw: ctxPut(padded), status: 400, code: badCtx},
		{name: "context in the standard alphabet", raw: ctxPut(stdAlphabet), status: 400, code: badCtx},
		{name: "context cut by one character", raw: ctxPut(plainCtx[:len(plainCtx)-1]), status: 400, code: badCtx},
		{name: "context cut by three characters", raw: ctxPut(plainCtx[:len(plainCtx)-3]), status: 400, code: badCtx},
		{name: "context cut to its format byte", raw: ctxPut(plainCtx[:2]), status: 400, code: badCtx},
		{name: "context with trailing bytes", raw: ctxPut(trailing), status: 400, code: badCtx},
		{name: "context of an unknown format", raw: ctxPut(wrongFormat), status: 400, code: badCtx},
		{name: "context base64 of garbage", raw: ctxPut(garbage), status: 400, code: badCtx},
		{name: "context counting 2^64-1 entries", raw: ctxPut(hugeCount), status: 400, code: badCtx},
		{name: "context over the entry limit", raw: ctxPut(countOverLimit), status: 400, code: badCtx},
		{name: "context counting more entries than it holds", raw: ctxPut(countOverBytes), status: 400, code: badCtx},
		{name: "context with an overlong varint", raw: ctxPut(overlong), status: 400, code: badCtx},
		{name: "context with unsorted actors", raw: ctxPut(unsorted), status: 400, code: badCtx},
		{name: "context with a zero counter", raw: ctxPut(zeroCounter), status: 400, code: badCtx},
		{name: "context counter 2^64-1", raw: ctxPut(maxCounter), status: 400, code: badCtx},
		{name: "context counter 2^64-2", raw: ctxPut(nearMaxCounter), status: 400, code: badCtx},
		{name: "context counter over the bound", raw: ctxPut(overBound), status: 400, code: badCtx},
		{name: "context longer than any context", raw: ctxPut(tooLong), status: 400, code: badCtx},
		{name: "context empty", raw: ctxPut(""), status: 400, code: badCtx},
		{name: "context twice", raw: r(put, "/keys/plain", "v2", "X-Context", plainCtx, "X-Context", plainCtx), status: 400, code: badCtx},
		{name: "context with NUL", raw: ctxPut(plainCtx + "\x00"), status: 400, code: badRequest},
		{name: "DELETE context not base64", raw: ctxDelete("siblings", "!!"), status: 400, code: badCtx},
		{name: "DELETE context cut", raw: ctxDelete("siblings", plainCtx[:len(plainCtx)-2]), status: 400, code: badCtx},
		{name: "DELETE context counter 2^64-1", raw: ctxDelete("siblings", maxCounter), status: 400, code: badCtx},
		{name: "DELETE context counting 2^64-1 entries", raw: ctxDelete("plain", hugeCount), status: 400, code: badCtx},
		{name: "DELETE context padded", raw: ctxDelete("plain", padded), status: 400, code: badCtx},
		{name: "DELETE context empty", raw: ctxDelete("plain", ""), status: 400, code: badCtx},
		// A forged context a store could have issued is a context: the
		// write is accepted and its version can be superseded.
		{name: "context counter at the bound", raw: r(put, "/keys/forged", "v", "X-Context", atBound), status: 204, stores: "forged"},

		// Keys, on every route that takes one.
		{name: "PUT %zz", raw: r(put, "/keys/%zz", "v"), status: 400, code: badRequest},
		{name: "GET abc%", raw: r(get, "/keys/abc%", ""), status: 400, code: badRequest},
		{name: "DELETE %G0", raw: r(del, "/keys/%G0", ""), status: 400, code: badRequest},
		{name: "GET local %zz", raw: r(get, "/keys/%zz?local=true", ""), status: 400, code: badRequest},
		{name: "cluster key %zz", raw: r(get, "/cluster/keys/a%2", ""), status: 400, code: badRequest},
		{name: "remove %zz", raw: r(post, "/cluster/remove/%zz", ""), status: 400, code: badRequest},
		{name: "PUT %00", raw: r(put, "/keys/%00", "v"), status: 400, code: badKey},
		{name: "GET a%00b", raw: r(get, "/keys/a%00b", ""), status: 400, code: badKey},
		{name: "DELETE %00", raw: r(del, "/keys/plain%00", ""), status: 400, code: badKey},
		{name: "GET local %00", raw: r(get, "/keys/%00?local=true", ""), status: 400, code: badKey},
		{name: "cluster key %00", raw: r(get, "/cluster/keys/%00", ""), status: 400, code: badKey},
		{name: "raw NUL in the path", raw: r(get, "/keys/a\x00b", ""), status: 400, code: badRequest},
		{name: "raw space in the path", raw: r(get, "/keys/a b", ""), status: 400, code: badRequest},
		{name: "PUT empty key", raw: r(put, "/keys/", "v"), status: 400, code: badKey},
		{name: "GET empty key", raw: r(get, "/keys/", ""), status: 400, code: badKey},
		{name: "DELETE empty key", raw: r(del, "/keys/", ""), status: 400, code: badKey},
		{name: "GET local empty key", raw: r(get, "/keys/?local=true", ""), status: 400, code: badKey},
		{name: "cluster key empty", raw: r(get, "/cluster/keys/", ""), status: 400, code: badKey},
		{name: "PUT 1025-byte key", raw: r(put, "/keys/"+key1025, "v"), status: 400, code: badKey},
		{name: "GET 1025-byte key", raw: r(get, "/keys/"+key1025, ""), status: 400, code: badKey},
		{name: "DELETE 1025-byte key", raw: r(del, "/keys/"+key1025, ""), status: 400, code: badKey},
		{name: "GET local 1025-byte key", raw: r(get, "/keys/"+key1025+"?local=true", ""), status: 400, code: badKey},
		{name: "cluster key 1025 bytes", raw: r(get, "/cluster/keys/"+key1025, ""), status: 400, code: badKey},
		{name: "PUT 1025 bytes once decoded", raw: r(put, "/keys/%2F"+key1024, "v"), status: 400, code: badKey},
		{name: "PUT key escaped past any limit", raw: r(put, "/keys/"+strings.Repeat("%41", 2*MaxKeyBytes), "v"), status: 400, code: badKey},
		{name: "PUT 1024-byte key", raw: r(put, "/keys/"+key1024, "v"), status: 204, stores: key1024},
		{name: "cluster key 1024 bytes", raw: r(get, "/cluster/keys/"+key1024, ""), status: 200},
		{name: "remove an id with NUL", raw: r(post, "/cluster/remove/%00", ""), status: 404, code: codeUnknownMember},

		// r, w and the query.
		{name: "w=0", raw: r(put, "/keys/plain?w=0", "v2"), status: 400, code: badQuorum},
		{name: "w=N+1", raw: r(put, "/keys/plain?w=4", "v2"), status: 400, code: badQuorum},
		{name: "w=abc", raw: r(put, "/keys/plain?w=abc", "v2"), status: 400, code: badQuorum},
		{name: "w empty", raw: r(put, "/keys/plain?w=", "v2"), status: 400, code: badQuorum},
		{name: "w=-1", raw: r(put, "/keys/plain?w=-1", "v2"), status: 400, code: badQuorum},
		{name: "w=+1", raw: r(put, "/keys/plain?w=%2B1", "v2"), status: 400, code: badQuorum},
		{name: "w huge", raw: r(put, "/keys/plain?w=99999999999999999999999999", "v2"), status: 400, code: badQuorum},
		{name: "w twice", raw: r(put, "/keys/plain?w=1&w=2", "v2"), status: 400, code: badQuorum},
		{name: "w=%zz", raw: r(put, "/keys/plain?w=%zz", "v2"), status: 400, code: codeBadQuery},
		{name: "w with a semicolon", raw: r(put, "/keys/plain?w=1;x=2", "v2"), status: 400, code: codeBadQuery},
		{name: "DELETE w=0", raw: r(del, "/keys/plain?w=0", ""), status: 400, code: badQuorum},
		{name: "DELETE w=N+1", raw: r(del, "/keys/siblings?w=4", ""), status: 400, code: badQuorum},
		{name: "DELETE w=%zz", raw: r(del, "/keys/plain?w=%zz", ""), status: 400, code: codeBadQuery},
		{name: "r=0", raw: r(get, "/keys/plain?r=0", ""), status: 400, code: badQuorum},
		{name: "r=N+1", raw: r(get, "/keys/plain?r=4", ""), status: 400, code: badQuorum},
		{name: "r=abc", raw: r(get, "/keys/plain?r=abc", ""), status: 400, code: badQuorum},
		{name: "r empty", raw: r(get, "/keys/plain?r=", ""), status: 400, code: badQuorum},
		{name: "r=-2", raw: r(get, "/keys/plain?r=-2", ""), status: 400, code: badQuorum},
		{name: "r huge", raw: r(get, "/keys/plain?r=18446744073709551617", ""), status: 400, code: badQuorum},
		{name: "r=%zz", raw: r(get, "/keys/plain?r=%zz", ""), status: 400, code: codeBadQuery},
		{name: "r=abc local", raw: r(get, "/keys/plain?local=true&r=abc", ""), status: 400, code: badQuorum},
		{name: "local=maybe", raw: r(get, "/keys/plain?local=maybe", ""), status: 400, code: codeBadQuery},
		{name: "local empty", raw: r(get, "/keys/plain?local=", ""), status: 400, code: codeBadQuery},
		{name: "local=%zz", raw: r(get, "/keys/plain?local=%zz", ""), status: 400, code: codeBadQuery},
		{name: "PUT local=true", raw: r(put, "/keys/plain?local=true", "v2"), status: 400, code: codeBadQuery},
		{name: "DELETE local=true", raw: r(del, "/keys/plain?local=true", ""), status: 400, code: codeBadQuery},

		// Values and bodies.
		{name: "value of exactly the limit", raw: r(put, "/keys/limit/exact", exact), status: 204, stores: "limit/exact"},
		{name: "value one byte over", raw: r(put, "/keys/plain", over), status: 413, code: tooLarge},
		{name: "chunked value of exactly the limit", raw: chunkedPut("limit/chunked", exact), status: 204, stores: "limit/chunked"},
		{name: "chunked value one byte over", raw: chunkedPut("plain", over), status: 413, code: tooLarge},
		{name: "Content-Length over, body unsent", raw: "PUT /keys/plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 1099511627776\r\n\r\nabc", status: 413, code: tooLarge},
		{name: "Content-Length not a number", raw: "PUT /keys/plain HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\nabc", status: 400, code: badRequest},
		{name: "Content-Length negative", raw: "PUT /keys/plain HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", status: 400, code: badRequest},
		{name: "Content-Length twice, differing", raw: "PUT /keys/plain HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", status: 400, code: badRequest},
		{name: "malformed chunked body", raw: "PUT /keys/plain HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", status: 400, code: codeBadBody},
		{name: "unsupported Transfer-Encoding", raw: "PUT /keys/plain HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400, code: badRequest},
		{name: "unsupported Expect", raw: r(put, "/keys/plain", "v2", "Expect", "200-ok"), status: 417, code: badRequest},

		// Headers and request lines net/http refuses.
		{name: "header over MaxHeaderBytes", raw: r(get, "/keys/plain", "", "X-Huge", hugeHeader), status: 431, code: headersLarge},
		{name: "context over MaxHeaderBytes", raw: r(put, "/keys/plain", "v2", "X-Context", hugeHeader), status: 431, code: headersLarge},
		{name: "headers over MaxHeaderBytes together", raw: r(put, "/keys/plain", "v2", manyHeaders...), status: 431, code: headersLarge},
		{name: "request line over MaxHeaderBytes", raw: r(del, "/keys/"+hugeHeader, ""), status: 431, code: headersLarge},
		{name: "cluster headers over MaxHeaderBytes", raw: r(get, "/cluster", "", "X-Huge", hugeHeader), status: 431, code: headersLarge},
		{name: "header of half MaxHeaderBytes", raw: r(get, "/keys/plain", "", "X-Big", bigButAllowed), status: 200},
		{name: "no Host", raw: "GET /keys/plain HTTP/1.1\r\n\r\n", status: 400, code: badRequest},
		{name: "header line without a colon", raw: "GET /keys/plain HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n", status: 400, code: badRequest},
		{name: "header name with a space", raw: "GET /cluster HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n", status: 400, code: badRequest},
		{name: "HTTP/2.0 request line", raw: "GET /cluster/ring HTTP/2.0\r\nHost: h\r\n\r\n", status: 400, code: badRequest},
		{name: "malformed HTTP version", raw: "GET /keys/plain HTTP/9\r\nHost: h\r\n\r\n", status: 400, code: badRequest},
		{name: "path without a slash", raw: "GET keys/plain HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, code: badRequest},
		{name: "method with a space", raw: "G T /keys/plain HTTP/1.1\r\nHost: h\r\n\r\n", status: 400, code: badRequest},
		{name: "ui %zz", raw: r(get, "/ui%zz", ""), status: 400, code: badRequest},
		{name: "leave %zz", raw: r(post, "/cluster/leave%zz", ""), status: 400, code: badRequest},

		// net/http's own answers after a handler's, on one connection.
		{name: "%zz after a good request", raw: "GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n" + r(get, "/keys/%zz", ""), earlier: 1, status: 400, code: badRequest},
		{name: "header over MaxHeaderBytes after good requests", raw: "GET /keys/plain HTTP/1.1\r\nHost: h\r\n\r\n" + "GET /cluster HTTP/1.1\r\nHost: h\r\n\r\n" + r(get, "/keys/plain", "", "X-Huge", hugeHeader), earlier: 2, status: 431, code: headersLarge},
		{name: "unsupported Expect after a good PUT", raw: "PUT /keys/limit/again HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx" + r(put, "/keys/plain", "v2", "Expect", "x"), earlier: 1, status: 417, code: badRequest, stores: "limit/again"},

		// Wrong methods, on every route.
		{name: "POST key", raw: r(post, "/keys/plain", "v2"), status: 405, code: notAllowed, allow: keysAllow},
		{name: "PATCH key", raw: r(http.MethodPatch, "/keys/plain", "v2"), status: 405, code: notAllowed, allow: keysAllow},
		{name: "OPTIONS key", raw: r(http.MethodOptions, "/keys/plain", ""), status: 405, code: notAllowed, allow: keysAllow},
		{name: "TRACE key", raw: r(http.MethodTrace, "/keys/plain", ""), status: 405, code: notAllowed, allow: keysAllow},
		{name: "HEAD key", raw: r(http.MethodHead, "/keys/plain", ""), method: http.MethodHead, status: 405, code: notAllowed, allow: keysAllow},
		{name: "BREW key", raw: r("BREW", "/keys/plain", ""), status: 405, code: notAllowed, allow: keysAllow},
		{name: "lower-case get key", raw: r("get", "/keys/plain", ""), status: 405, code: notAllowed, allow: keysAllow},
		{name: "POST local key", raw: r(post, "/keys/plain?local=true", "v2"), status: 405, code: notAllowed, allow: keysAllow},
		{name: "PUT cluster", raw: r(put, "/cluster", "x"), status: 405, code: notAllowed, allow: getAllow},
		{name: "DELETE cluster", raw: r(del, "/cluster", ""), status: 405, code: notAllowed, allow: getAllow},
		{name: "POST cluster key", raw: r(post, "/cluster/keys/plain", ""), status: 405, code: notAllowed, allow: getAllow},
		{name: "DELETE cluster key", raw: r(del, "/cluster/keys/plain", ""), status: 405, code: notAllowed, allow: getAllow},
		{name: "PUT ring", raw: r(put, "/cluster/ring", "x"), status: 405, code: notAllowed, allow: getAllow},
		{name: "GET leave", raw: r(get, "/cluster/leave", ""), status: 405, code: notAllowed, allow: postAllow},
		{name: "DELETE leave", raw: r(del, "/cluster/leave", ""), status: 405, code: notAllowed, allow: postAllow},
		{name: "GET remove", raw: r(get, "/cluster/remove/node-b", ""), status: 405, code: notAllowed, allow: postAllow},
		{name: "PUT remove", raw: r(put, "/cluster/remove/node-b", "x"), status: 405, code: notAllowed, allow: postAllow},
		{name: "POST healthz", raw: r(post, "/healthz", ""), status: 405, code: notAllowed, allow: getAllow},
		{name: "PUT readyz", raw: r(put, "/readyz", "x"), status: 405, code: notAllowed, allow: getAllow},
		{name: "DELETE metrics", raw: r(del, "/metrics", ""), status: 405, code: notAllowed, allow: getAllow},
		{name: "POST ui", raw: r(post, "/ui", "x"), status: 405, code: notAllowed, allow: getAllow},
		{name: "remove without an id", raw: r(post, "/cluster/remove/", ""), status: 404, code: codeNoRoute},
		{name: "asterisk target", raw: r(get, "*", ""), status: 404, code: codeNoRoute},
		{name: "HTTP/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", status: 404, code: codeNoRoute},

		// Slow bodies: answered at the body deadline, then hung up on.
		{name: "PUT body stalls", send: stallAfter("PUT /keys/plain HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly ten.."), status: 408, code: codeBodyTimeout, slow: true},
		{name: "PUT body never sent", send: stallAfter("PUT /keys/plain HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"), status: 408, code: codeBodyTimeout, slow: true},
		{name: "PUT body trickles", send: trickle("PUT /keys/siblings HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n", strings.Repeat("t", 1000)), status: 408, code: codeBodyTimeout, slow: true},
		{name: "PUT chunked body stalls", send: stallAfter("PUT /keys/plain HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"), status: 408, code: codeBodyTimeout, slow: true},
		{name: "PUT bad key, body stalls", send: stallAfter("PUT /keys/%00 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"), status: 400, code: badKey, slow: true},
		{name: "healthz with a stalled body", send: stallAfter("GET /healthz HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc"), status: 200, slow: true},
	}

	before := s.snapshot(t)
	stored := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pre := s.snapshot(t)
			puts, deletes, _, _ := s.svc.calls()
			send := tc.send
			if send == nil {
				send = writeAll(tc.raw)
			}
			a := s.exchangeAfter(t, tc.earlier, tc.method, send)
			if a.resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; headers %v; body %.300q", a.resp.StatusCode, tc.status, a.resp.Header, a.body)
			}
			if tc.status >= 400 {
				wantJSONErrorAnswer(t, a, tc.code, tc.method == http.MethodHead)
			}
			if tc.status == http.StatusMethodNotAllowed {
				if got := a.resp.Header.Get("Allow"); got != tc.allow {
					t.Errorf("Allow %q, want %q", got, tc.allow)
				}
			}
			if !a.hungUp {
				t.Errorf("the server kept the connection open after answering a Connection: close request")
			}
			if tc.slow && (a.took < badInputBodyTimeout || a.took > badInputBodyTimeout+5*time.Second) {
				t.Errorf("answered after %v; the body deadline, which should end it, is %v", a.took, badInputBodyTimeout)
			}
			post := s.snapshot(t)
			if changed := storeChanges(pre, post, tc.stores); len(changed) > 0 {
				t.Errorf("the request changed what is stored: %v", changed)
			}
			if tc.stores != "" {
				stored[tc.stores] = true
				if pre[tc.stores] == post[tc.stores] {
					t.Errorf("an accepted write did not store %.40q", tc.stores)
				}
				return
			}
			if p, d, _, _ := s.svc.calls(); p != puts || d != deletes {
				t.Errorf("a rejected request reached the service: %d puts, %d deletes", p-puts, d-deletes)
			}
		})
	}

	// The table as a whole: only the accepted writes changed anything, and
	// the seeded keys read as before.
	after := s.snapshot(t)
	for k := range stored {
		delete(after, k)
	}
	if changed := storeChanges(before, after, ""); len(changed) > 0 {
		t.Errorf("the table changed what is stored: %v", changed)
	}
	if a := s.exchange(t, http.MethodGet, writeAll(rawRequest(http.MethodGet, "/keys/plain", ""))); a.resp.StatusCode != http.StatusOK || string(a.body) != "v1" {
		t.Errorf("GET /keys/plain after the table: %d %q", a.resp.StatusCode, a.body)
	}
}

// wantJSONErrorAnswer checks a is the contract's JSON error with code: the
// content type, and a body of exactly a non-empty sentence and the code
// (none for HEAD, whose answer has no body).
func wantJSONErrorAnswer(t *testing.T, a badInputAnswer, code string, head bool) {
	t.Helper()
	if ct := a.resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %.300q", ct, a.body)
	}
	if head {
		if len(a.body) != 0 {
			t.Fatalf("an answer to HEAD has a body: %q", a.body)
		}
		return
	}
	if cl := a.resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(a.body)) {
		t.Fatalf("Content-Length %s, body of %d bytes", cl, len(a.body))
	}
	var body map[string]any
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %.300q is not JSON: %v", a.body, err)
	}
	if dec.More() {
		t.Fatalf("error body %.300q holds more than one JSON value", a.body)
	}
	if len(body) != 2 {
		t.Fatalf("error body %v: want exactly error and code", body)
	}
	if got, _ := body["code"].(string); got != code {
		t.Fatalf("code %q, want %q (body %v)", got, code, body)
	}
	if msg, _ := body["error"].(string); len(msg) < 10 || !strings.Contains(msg, " ") {
		t.Fatalf("error %q is not a sentence", msg)
	}
}

// TestCannedAnswers checks the recogniser of net/http's own error answers on
// each of their forms, and that near misses are left alone.
func TestCannedAnswers(t *testing.T) {
	const date = "Mon, 02 Jan 2006 15:04:05 GMT"
	canned := func(line, body string) string { return "HTTP/1.1 " + line + cannedHeaders + body }
	replaced := []struct {
		written string
		status  int
		code    string
	}{
		{canned("400 Bad Request", "400 Bad Request"), 400, codeBadRequest},
		{canned("400 Bad Request: missing required Host header", "400 Bad Request: missing required Host header"), 400, codeBadRequest},
		{canned("431 Request Header Fields Too Large", "431 Request Header Fields Too Large"), 431, codeHeadersTooLarge},
		{canned("501 Not Implemented", "Unsupported transfer encoding"), 400, codeBadRequest},
		{canned("505 HTTP Version Not Supported: unsupported protocol version", "505 HTTP Version Not Supported: unsupported protocol version"), 400, codeBadRequest},
		{"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: " + date + "\r\nContent-Length: 0\r\n\r\n", 417, codeBadRequest},
		{"HTTP/1.0 417 Expectation Failed\r\nConnection: close\r\nDate: " + date + "\r\nContent-Length: 0\r\n\r\n", 417, codeBadRequest},
	}
	for _, tc := range replaced {
		answer := cannedAnswer([]byte(tc.written), DefaultMaxHeaderBytes)
		if answer == nil {
			t.Errorf("%.60q was not recognised", tc.written)
			continue
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
		if err != nil {
			t.Fatalf("%q: %v", answer, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !resp.Close {
			t.Errorf("%.60q became status %d (close %v), want %d and a close", tc.written, resp.StatusCode, resp.Close, tc.status)
		}
		wantJSONErrorAnswer(t, badInputAnswer{resp: resp, body: body}, tc.code, false)
	}

	left := []string{
		canned("200 OK", "200 OK"),
		canned("400 Bad Request", "400 Bad Request\n"),
		canned("400 Bad Request", "other"),
		canned("400 Bad Request: a\r\nX: b", "400 Bad Request: a\r\nX: b"),
		canned("400 Bad Thing", "400 Bad Thing"),
		canned("400 Bad Requests", "400 Bad Requests"),
		canned("4000 Bad Request", "4000 Bad Request"),
		canned("501 Not Implemented", "Unsupported transfer encodings"),
		canned("431 Request Header Fields Too Large", "431 Request Header Fields Too Large") + "\r\n",
		"HTTP/1.0 400 Bad Request" + cannedHeaders + "400 Bad Request",
		"HTTP/1.1 400 Bad Request\r\nDate: " + date + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request",
		"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: " + date + "X\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: " + date + "\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: Mon, 02 Jan 2006\r\n15:04:05 GMT\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}",
		"HTTP/1.1 400",
		"",
	}
	for _, written := range left {
		if answer := cannedAnswer([]byte(written), DefaultMaxHeaderBytes); answer != nil {
			t.Errorf("%q was replaced by %q", written, answer)
		}
	}
}

// TestServerLeavesHandlerAnswersAlone serves answers whose bodies are,
// byte for byte, net/http's own error answers, each written to the
// connection in a write of its own, on fresh and on kept-alive connections:
// they must arrive as written.
func TestServerLeavesHandlerAnswersAlone(t *testing.T) {
	bodies := map[string]string{
		"/400": "HTTP/1.1 400 Bad Request" + cannedHeaders + "400 Bad Request",
		"/431": "HTTP/1.1 431 Request Header Fields Too Large" + cannedHeaders + "431 Request Header Fields Too Large",
		"/417": "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 0\r\n\r\n",
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := bodies[r.URL.Path]
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		// The headers go out in one write and the body in the next.
		if err := rc.Flush(); err != nil {
			panic(err)
		}
		io.WriteString(w, body) //nolint:errcheck
		if err := rc.Flush(); err != nil {
			panic(err)
		}
	})
	srv := NewServer(h, ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed at the end
	defer srv.Close()

	s := &badInputServer{addr: ln.Addr().String()}
	paths := []string{"/400", "/431", "/417"}
	var pipelined strings.Builder
	for _, p := range paths {
		pipelined.WriteString("GET " + p + " HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	for _, p := range paths {
		// A fresh connection, then the same paths kept alive.
		a := s.exchange(t, http.MethodGet, writeAll(rawRequest(http.MethodGet, p, "")))
		if a.resp.StatusCode != http.StatusOK || string(a.body) != bodies[p] {
			t.Errorf("GET %s: status %d, body %q; want 200 and %q", p, a.resp.StatusCode, a.body, bodies[p])
		}
	}
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(badInputExchangeTimeout)) //nolint:errcheck
	if _, err := io.WriteString(conn, pipelined.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for _, p := range paths {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("kept alive, GET %s: %v", p, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != bodies[p] {
			t.Errorf("kept alive, GET %s: status %d, body %q; want 200 and %q", p, resp.StatusCode, body, bodies[p])
		}
	}
}
