package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

func FuzzParseKey(f *testing.F) {
	for _, seed := range []string{
		"", "a", "a/b", "a//b", ".", "..", "a%2Fb", "%zz", "%", "%2", "%00", "a%00", "%FF",
		"100%25", "+", strings.Repeat("k", MaxKeyBytes), strings.Repeat("k", MaxKeyBytes+1),
		strings.Repeat("%41", MaxKeyBytes), strings.Repeat("%41", MaxKeyBytes) + "a",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, escaped string) {
		key, err := parseKey(escaped)
		if err != nil {
			var e *apiError
			if !errors.As(err, &e) || e.status != http.StatusBadRequest || e.code != codeBadKey {
				t.Fatalf("parseKey(%q): error %v is not a 400 bad_key", escaped, err)
			}
			return
		}
		if len(key) < 1 || len(key) > MaxKeyBytes || bytes.IndexByte(key, 0) >= 0 {
			t.Fatalf("parseKey(%q) accepted %q (%d bytes)", escaped, key, len(key))
		}
		// Accepted keys are the percent-decoding of the input, and survive
		// the round trip a client makes with url.PathEscape.
		if want, _ := url.PathUnescape(escaped); string(key) != want {
			t.Fatalf("parseKey(%q) = %q, want %q", escaped, key, want)
		}
		if again, err := parseKey(url.PathEscape(string(key))); err != nil || !bytes.Equal(again, key) {
			t.Fatalf("key %q does not round-trip through PathEscape: %q, %v", key, again, err)
		}
	})
}

func FuzzMultipart(f *testing.F) {
	f.Add([]byte("one"), "text/plain", []byte("two"), "application/json", []byte(""), "", uint8(2), int64(1715000000000000000))
	f.Add([]byte("--boundary\r\n\r\n"), "multipart/mixed; boundary=x", []byte("\r\n--"), "a\r\nb", []byte{0, 1, 2}, " spaced ", uint8(3), int64(0))
	f.Fuzz(func(t *testing.T, v1 []byte, ct1 string, v2 []byte, ct2 string, v3 []byte, ct3 string, n uint8, modified int64) {
		all := []version.Sibling{
			{Value: v1, ContentType: ct1, Modified: modified},
			{Value: v2, ContentType: ct2, Modified: modified / 3},
			{Value: v3, ContentType: ct3},
		}
		siblings := all[:2+int(n%2)]
		body, contentType := encodeSiblings(siblings)
		parts := readSiblings(t, contentType, bytes.NewReader(body))
		if len(parts) != len(siblings) {
			t.Fatalf("%d parts, want %d", len(parts), len(siblings))
		}
		for i, s := range siblings {
			p := parts[i]
			if p.body != string(s.Value) {
				t.Fatalf("part %d: value %q, want %q", i, p.body, s.Value)
			}
			if want := contentTypeOf(s.ContentType); p.contentType != want {
				t.Fatalf("part %d: Content-Type %q, want %q", i, p.contentType, want)
			}
			if s.Modified == 0 {
				if p.lastModified != "" {
					t.Fatalf("part %d: Last-Modified %q for an unknown time", i, p.lastModified)
				}
				continue
			}
			if want := time.Unix(0, s.Modified).UTC().Format(http.TimeFormat); p.lastModified != want {
				t.Fatalf("part %d: Last-Modified %q, want %q", i, p.lastModified, want)
			}
		}
	})
}

func FuzzNoneMatch(f *testing.F) {
	f.Add(`"abc"`, `"abc"`)
	f.Add(`W/"abc", "x"`, `"abc"`)
	f.Add(`*`, `"abc"`)
	f.Add(`"a,"abc"`, `"abc"`)
	f.Fuzz(func(t *testing.T, header, etag string) {
		got := noneMatch([]string{header}, etag)
		// Matching a header that does not even mention the tag, or "*", is a
		// false 304: the client would keep a stale value.
		if got && !strings.Contains(header, etag) && !strings.Contains(header, "*") {
			t.Fatalf("noneMatch(%q, %q) = true", header, etag)
		}
	})
}

func FuzzAccept(f *testing.F) {
	for _, seed := range []struct{ accept, native string }{
		{"application/json", "text/plain"},
		{"application/json", "application/json"},
		{"*/*", "multipart/mixed"},
		{"text/*;q=0.5, application/json;q=0.4", "text/html; charset=utf-8"},
		{"application/JSON;Q=1.0;level=1, */*;q=0", "image/png"},
		{"application/json;q=1.5, */*;q=NaN", "application/octet-stream"},
		{"*/json, application/, ;q=0.1", "application/json"},
		{"multipart/mixed;q=0.9,application/*;q=0.9", "multipart/mixed"},
	} {
		f.Add(seed.accept, seed.native)
	}
	f.Fuzz(func(t *testing.T, accept, native string) {
		ranges := parseAccept([]string{accept})
		for _, r := range ranges {
			if !(r.q >= 0 && r.q <= 1) || r.typ == "" || r.sub == "" || (r.typ == "*" && r.sub != "*") {
				t.Fatalf("parseAccept(%q) kept %+v", accept, r)
			}
			if r.typ != strings.ToLower(r.typ) || r.sub != strings.ToLower(r.sub) {
				t.Fatalf("parseAccept(%q) kept %+v, not lower case", accept, r)
			}
		}
		q, named := quality(ranges, jsonMediaType)
		if !(q >= 0 && q <= 1) {
			t.Fatalf("quality of JSON under %q is %v", accept, q)
		}
		got := wantsJSON([]string{accept}, native)
		// JSON is only chosen when the header gives it a positive q, and
		// never when it names no media range at all.
		if got && (q <= 0 || len(ranges) == 0) {
			t.Fatalf("wantsJSON(%q, %q) with JSON at q=%v", accept, native, q)
		}
		// Naming application/json alone always gets JSON.
		if named && len(ranges) == 1 && q > 0 && !got {
			t.Fatalf("wantsJSON(%q, %q) = false though only JSON is acceptable", accept, native)
		}
	})
}
