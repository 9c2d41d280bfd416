package api

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// decodeDocument decodes a JSON read answer strictly: unknown fields fail.
func decodeDocument(t *testing.T, body []byte) siblingsDocument {
	t.Helper()
	var doc siblingsDocument
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JSON answer %q: %v", body, err)
	}
	return doc
}

func TestJSONOneValue(t *testing.T) {
	h := newHarness(t)
	putCtx := h.put("greeting", "hello", "text/plain; charset=utf-8")
	raw := h.do(http.MethodGet, "/keys/greeting", "")

	rec := h.do(http.MethodGet, "/keys/greeting", "", "Accept", "application/json")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
	}
	hdr := rec.Header()
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if got := hdr.Get("X-Context"); got != putCtx {
		t.Fatalf("X-Context %q, want the PUT's %q", got, putCtx)
	}
	if got, rawTag := hdr.Get("ETag"), raw.Header().Get("ETag"); got == "" || got == rawTag || !strings.HasPrefix(got, `"`) || !strings.HasSuffix(got, `"`) {
		t.Fatalf("ETag %q: want a strong tag of its own (the value's is %q)", got, rawTag)
	}
	for _, name := range []string{"Last-Modified", "Cache-Control"} {
		if hdr.Get(name) != raw.Header().Get(name) {
			t.Errorf("%s %q, the raw answer has %q", name, hdr.Get(name), raw.Header().Get(name))
		}
	}
	if !slices.Contains(hdr.Values("Vary"), "Accept") || !slices.Contains(raw.Header().Values("Vary"), "Accept") {
		t.Errorf("Vary %q (raw %q): both representations must say they vary by Accept", hdr.Values("Vary"), raw.Header().Values("Vary"))
	}
	doc := decodeDocument(t, rec.Body.Bytes())
	want := siblingsDocument{Context: putCtx, Siblings: []siblingEntry{
		{ContentType: "text/plain; charset=utf-8", Value: []byte("hello"), LastModified: "2024-05-06T07:08:09Z"},
	}}
	if !documentsEqual(doc, want) {
		t.Fatalf("document %+v, want %+v", doc, want)
	}
	// The value travels as standard base64, padded.
	if !strings.Contains(rec.Body.String(), `"value":"`+base64.StdEncoding.EncodeToString([]byte("hello"))+`"`) {
		t.Fatalf("body %s: value is not standard base64", rec.Body)
	}
}

func TestJSONSiblings(t *testing.T) {
	h := newHarness(t)
	h.put("cart", `{"items":["milk"]}`, "application/json")
	h.put("cart", "\x00\xffeggs", "") // binary, stored without a type

	multi := h.do(http.MethodGet, "/keys/cart", "")
	rec := h.do(http.MethodGet, "/keys/cart", "", "Accept", "application/json")
	if rec.Code != http.StatusMultipleChoices {
		t.Fatalf("status %d, want 300", rec.Code)
	}
	if got, want := rec.Header().Get("X-Context"), multi.Header().Get("X-Context"); got != want {
		t.Fatalf("X-Context %q, the multipart answer has %q", got, want)
	}
	doc := decodeDocument(t, rec.Body.Bytes())
	if doc.Context != rec.Header().Get("X-Context") {
		t.Fatalf("body context %q, header %q", doc.Context, rec.Header().Get("X-Context"))
	}
	// Same siblings, same order, as the multipart parts.
	parts := readSiblings(t, multi.Header().Get("Content-Type"), multi.Body)
	if len(parts) != len(doc.Siblings) || len(parts) != 2 {
		t.Fatalf("%d parts, %d JSON siblings", len(parts), len(doc.Siblings))
	}
	for i, p := range parts {
		s := doc.Siblings[i]
		lm, err := time.Parse(time.RFC3339Nano, s.LastModified)
		if err != nil || s.ContentType != p.contentType || string(s.Value) != p.body || lm.UTC().Format(http.TimeFormat) != p.lastModified {
			t.Errorf("sibling %d: %+v, part %+v", i, s, p)
		}
	}

	// The document's context resolves the siblings, as the header's does.
	h.put("cart", "both", "text/plain", "X-Context", doc.Context)
	if rec := h.do(http.MethodGet, "/keys/cart", "", "Accept", "application/json"); rec.Code != http.StatusOK || len(decodeDocument(t, rec.Body.Bytes()).Siblings) != 1 {
		t.Fatalf("after resolving: status %d, body %s", rec.Code, rec.Body)
	}
}

// A sibling with no recorded write time has no last_modified.
func TestJSONWithoutWriteTime(t *testing.T) {
	obj, _ := (*version.Object)(nil).Write(testActor, nil, []byte("v"), "", time.Time{})
	obj.Siblings[0].Modified = 0
	doc := decodeDocument(t, encodeJSONSiblings(obj))
	if len(doc.Siblings) != 1 || doc.Siblings[0].LastModified != "" || doc.Siblings[0].ContentType != defaultContentType {
		t.Fatalf("document %+v", doc)
	}
	if body := string(encodeJSONSiblings(obj)); strings.Contains(body, "last_modified") {
		t.Fatalf("body %s names last_modified", body)
	}
}

func TestJSONNotFound(t *testing.T) {
	h := newHarness(t)
	rec := h.do(http.MethodGet, "/keys/never", "", "Accept", "application/json")
	wantError(t, rec, http.StatusNotFound, codeNotFound)
	if rec.Header().Get("X-Context") != "" {
		t.Fatalf("never written: X-Context %q", rec.Header().Get("X-Context"))
	}

	h.put("gone", "v", "")
	del := h.do(http.MethodDelete, "/keys/gone", "")
	rec = h.do(http.MethodGet, "/keys/gone", "", "Accept", "application/json")
	wantError(t, rec, http.StatusNotFound, codeNotFound) // the error body, not a document
	if got, want := rec.Header().Get("X-Context"), del.Header().Get("X-Context"); got == "" || got != want {
		t.Fatalf("deleted: X-Context %q, want the tombstone's %q", got, want)
	}
}

func TestJSONIfNoneMatch(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v", "")
	rawTag := h.do(http.MethodGet, "/keys/k", "").Header().Get("ETag")
	jsonTag := h.do(http.MethodGet, "/keys/k", "", "Accept", "application/json").Header().Get("ETag")

	rec := h.do(http.MethodGet, "/keys/k", "", "Accept", "application/json", "If-None-Match", jsonTag)
	if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 || rec.Header().Get("ETag") != jsonTag || rec.Header().Get("X-Context") == "" {
		t.Fatalf("JSON tag: status %d, ETag %q, X-Context %q", rec.Code, rec.Header().Get("ETag"), rec.Header().Get("X-Context"))
	}
	// Each tag revalidates only its own representation.
	if rec := h.do(http.MethodGet, "/keys/k", "", "Accept", "application/json", "If-None-Match", rawTag); rec.Code != http.StatusOK {
		t.Fatalf("raw tag, JSON asked: status %d, want 200", rec.Code)
	}
	if rec := h.do(http.MethodGet, "/keys/k", "", "If-None-Match", jsonTag); rec.Code != http.StatusOK {
		t.Fatalf("JSON tag, raw asked: status %d, want 200", rec.Code)
	}
	// A new sibling changes the JSON tag too.
	h.put("k", "w", "")
	rec = h.do(http.MethodGet, "/keys/k", "", "Accept", "application/json", "If-None-Match", jsonTag)
	if rec.Code != http.StatusMultipleChoices || rec.Header().Get("ETag") == jsonTag {
		t.Fatalf("stale JSON tag: status %d, ETag %q", rec.Code, rec.Header().Get("ETag"))
	}
}

func TestJSONLocalRead(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v", "text/plain")
	rec := h.do(http.MethodGet, "/keys/k?local=true", "", "Accept", "application/json")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if doc := decodeDocument(t, rec.Body.Bytes()); len(doc.Siblings) != 1 || string(doc.Siblings[0].Value) != "v" {
		t.Fatalf("document %+v", doc)
	}
}

// A large JSON answer is gzipped like any other, and decodes to the same document.
func TestJSONGzipped(t *testing.T) {
	h := newHarness(t)
	svc := h.svc
	big := strings.Repeat("abc", 1000)
	svc.set(func(f *fakeService) {
		obj, _ := f.objects["k"].Write(testActor, nil, []byte(big), "text/plain", f.clock)
		f.objects["k"] = obj
	})
	handler := New(svc, Options{Logger: discardLogger()})
	req := httptest.NewRequest(http.MethodGet, "/keys/k", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("status %d, Content-Encoding %q", rec.Code, rec.Header().Get("Content-Encoding"))
	}
	vary := strings.Join(rec.Header().Values("Vary"), ",")
	if !strings.Contains(vary, "Accept-Encoding") || !strings.Contains(vary, "Accept") {
		t.Fatalf("Vary %q", vary)
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if doc := decodeDocument(t, plain); len(doc.Siblings) != 1 || string(doc.Siblings[0].Value) != big {
		t.Fatalf("gzipped document does not hold the value")
	}
}

func TestContentNegotiation(t *testing.T) {
	for _, tt := range []struct {
		accept []string
		native string
		json   bool
	}{
		{nil, "text/plain", false},
		{[]string{""}, "text/plain", false},
		{[]string{"*/*"}, "text/plain", false},
		{[]string{"*/*"}, "multipart/mixed", false},
		{[]string{"application/*"}, "application/octet-stream", false},
		{[]string{"application/json"}, "text/plain", true},
		{[]string{"application/json"}, "multipart/mixed", true},
		{[]string{"Application/JSON; charset=utf-8"}, "text/plain", true},
		// The stored value is JSON itself: naming application/json asks
		// for the document; a wildcard gets the value.
		{[]string{"application/json"}, "application/json", true},
		{[]string{"application/*"}, "application/json", false},
		// q-values decide.
		{[]string{"application/json;q=0.5, */*"}, "text/plain", false},
		{[]string{"application/json, */*;q=0.1"}, "text/plain", true},
		{[]string{"text/plain;q=0.9, application/json;q=0.8"}, "text/plain", false},
		{[]string{"text/plain;q=0.8, application/json;q=0.9"}, "text/plain", true},
		{[]string{"text/plain, application/json"}, "text/plain", true},
		{[]string{"multipart/mixed;q=1, application/json;q=0.5"}, "multipart/mixed", false},
		{[]string{"text/*, application/json;q=0.5"}, "text/plain", false},
		{[]string{"application/json;q=0"}, "text/plain", false},
		{[]string{"application/json;q=0, */*"}, "text/plain", false},
		// The most specific range sets the q, not the first or the highest.
		{[]string{"*/*;q=1, application/json;q=0"}, "text/plain", false},
		{[]string{"application/*;q=0.1, application/json"}, "application/octet-stream", true},
		{[]string{"application/json;q=1;ext=1"}, "text/plain", true},
		// Several header lines count as one list.
		{[]string{"text/plain;q=0.2", "application/json"}, "text/plain", true},
		// A browser's header: the value as it is.
		{[]string{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, "text/plain", false},
		{[]string{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, "multipart/mixed", false},
		// Nothing acceptable: the usual answer rather than a 406.
		{[]string{"image/png"}, "text/plain", false},
		// Malformed ranges and q-values are skipped.
		{[]string{"application/json;q=2"}, "text/plain", false},
		{[]string{"application/json;q=x, */*"}, "text/plain", false},
		{[]string{"json, */*"}, "text/plain", false},
		{[]string{"*/json, text/plain"}, "text/plain", false},
		{[]string{",,application/json,,"}, "text/plain", true},
	} {
		if got := wantsJSON(tt.accept, tt.native); got != tt.json {
			t.Errorf("Accept %q for a %s value: JSON %v, want %v", tt.accept, tt.native, got, tt.json)
		}
	}
}

// Through the router: an Accept that does not choose JSON keeps today's answer.
func TestAcceptKeepsUsualAnswers(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v", "text/plain")
	for _, accept := range []string{"*/*", "text/*", "text/plain", "application/json;q=0.1, */*", "image/png"} {
		rec := h.do(http.MethodGet, "/keys/k", "", "Accept", accept)
		if rec.Code != http.StatusOK || rec.Body.String() != "v" || rec.Header().Get("Content-Type") != "text/plain" {
			t.Errorf("Accept %q: status %d, Content-Type %q, body %q", accept, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
	h.put("k", "w", "text/plain")
	rec := h.do(http.MethodGet, "/keys/k", "", "Accept", "*/*")
	if rec.Code != http.StatusMultipleChoices || !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/mixed;") {
		t.Fatalf("siblings with */*: status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

// openapi.yaml describes the document exactly: the Siblings and Sibling
// schemas list the fields encoded, require those always present, and the
// 200 and 300 of getKey offer application/json.
func TestOpenAPIDescribesJSONSiblings(t *testing.T) {
	doc := readOutline(t, "../openapi.yaml")
	h := newHarness(t)
	h.put("k", "v", "text/plain")
	h.put("k", "w", "")
	rec := h.do(http.MethodGet, "/keys/k", "", "Accept", "application/json")
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	sibling := body["siblings"].([]any)[0].(map[string]any)
	for schema, v := range map[string]map[string]any{"Siblings": body, "Sibling": sibling} {
		fields := keysOf(v)
		if props := doc.children("components", "schemas", schema, "properties"); !sameSet(props, fields) {
			t.Errorf("schema %s has properties %v, the API encodes %v", schema, props, fields)
		}
		required := slices.DeleteFunc(slices.Clone(fields), func(f string) bool { return f == "last_modified" })
		if req := doc.items["components > schemas > "+schema+" > required"]; !sameSet(req, required) {
			t.Errorf("schema %s requires %v, want %v", schema, req, required)
		}
	}
	for _, status := range []string{"200", "300"} {
		if !doc.has("paths", "/keys/{key}", "get", "responses", status, "content", "application/json") {
			t.Errorf("getKey %s does not offer application/json", status)
		}
		if !doc.has("paths", "/keys/{key}", "get", "responses", status, "headers", "Vary") {
			t.Errorf("getKey %s does not document Vary", status)
		}
	}
	if !doc.has("components", "schemas", "Sibling", "properties", "last_modified") {
		t.Error("Sibling lacks last_modified")
	}
}

// documentsEqual compares two documents field by field.
func documentsEqual(a, b siblingsDocument) bool {
	return a.Context == b.Context && slices.EqualFunc(a.Siblings, b.Siblings, func(x, y siblingEntry) bool {
		return x.ContentType == y.ContentType && bytes.Equal(x.Value, y.Value) && x.LastModified == y.LastModified
	})
}

// The outline reader of openapi_test.go is lenient where YAML is not: a
// plain (unquoted) scalar may not contain ": " or end in ":", which real
// parsers reject ("mapping values are not allowed here").
func TestOpenAPIPlainScalarsAreValidYAML(t *testing.T) {
	data, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	blockIndent := -1
	for i, line := range strings.Split(string(data), "\n") {
		content := strings.TrimLeft(line, " ")
		indent := len(line) - len(content)
		if content == "" || strings.HasPrefix(content, "#") {
			continue
		}
		if blockIndent >= 0 && indent > blockIndent {
			continue // inside a | or > block scalar
		}
		blockIndent = -1
		content = strings.TrimPrefix(content, "- ")
		key, value, ok := splitKey(content)
		if !ok {
			value = content // a sequence item
		}
		switch {
		case value == "|" || value == ">" || value == "|-" || value == ">-":
			blockIndent = indent
			continue
		case value == "" || strings.ContainsRune(`'"[{`, rune(value[0])):
			continue
		}
		if strings.Contains(value, ": ") || strings.HasSuffix(value, ":") || strings.Contains(value, " #") {
			t.Errorf("openapi.yaml:%d: the plain scalar of %q needs quotes: %q", i+1, key, value)
		}
	}
}
