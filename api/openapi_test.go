package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/node"
)

// TestOpenAPIMatchesRouter checks openapi.yaml against the router: every
// route and method served is documented and every documented one is served;
// every status a scenario produces on a route is listed under its operation,
// and every listed status is produced by some scenario; the error codes, the
// JSON field names and the member states are the ones the code uses.
func TestOpenAPIMatchesRouter(t *testing.T) {
	doc := readOutline(t, "../openapi.yaml")
	if v := doc.value["openapi"]; !strings.HasPrefix(v, "3.1") {
		t.Fatalf("openapi: %q, want 3.1.x", v)
	}

	// Routes and methods, both ways.
	served := map[string]bool{}
	mux := New(newFakeService(), Options{}).(chi.Routes)
	err := chi.Walk(mux, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+docPath(route)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, p := range doc.children("paths") {
		for _, m := range doc.children("paths", p) {
			if m != "parameters" {
				documented[strings.ToUpper(m)+" "+p] = true
			}
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("%s is served but not in openapi.yaml", op)
		}
	}
	for op := range documented {
		if !served[op] {
			t.Errorf("%s is in openapi.yaml but not served", op)
		}
	}

	// Statuses, both ways.
	observed, codes := runScenarios(t)
	documentedStatus := map[string]bool{}
	for op := range served {
		method, path, _ := strings.Cut(op, " ")
		for _, status := range doc.children("paths", path, strings.ToLower(method), "responses") {
			documentedStatus[op+" "+status] = true
		}
	}
	for s := range observed {
		if !documentedStatus[s] {
			t.Errorf("the router answers %s, but openapi.yaml does not list that status", s)
		}
	}
	for s := range documentedStatus {
		if !observed[s] {
			t.Errorf("openapi.yaml lists %s, but no scenario produced it: add one, or drop the status", s)
		}
	}
	if !doc.has("components", "responses", "MethodNotAllowed", "headers", "Allow") {
		t.Error("openapi.yaml does not describe the 405 answer with its Allow header")
	}

	// Error codes: the enum is exactly the code constants of errors.go, and
	// every code a scenario saw is one of them.
	enum := doc.items["components > schemas > Error > properties > code > enum"]
	if consts := codeConstants(t); !sameSet(enum, consts) {
		t.Errorf("Error.code enum %v, want the code constants of errors.go %v", enum, consts)
	}
	for code := range codes {
		if !slices.Contains(enum, code) {
			t.Errorf("code %q was answered but is not in the Error.code enum", code)
		}
	}

	// JSON shapes: documented properties and required fields are exactly the
	// fields the handlers encode.
	h := newHarness(t)
	shapes := map[string]any{}
	shapes["Cluster"] = getJSON(t, h, "/cluster")
	shapes["Member"] = shapes["Cluster"].(map[string]any)["members"].([]any)[0]
	shapes["KeyInfo"] = getJSON(t, h, "/cluster/keys/k")
	shapes["Ring"] = getJSON(t, h, "/cluster/ring")
	shapes["Error"] = getJSON(t, h, "/keys/missing")
	shapes["MembershipChange"] = postJSON(t, h, "/cluster/leave")
	if removed := postJSON(t, h, "/cluster/remove/node-b"); !sameSet(keysOf(removed.(map[string]any)), keysOf(shapes["MembershipChange"].(map[string]any))) {
		t.Errorf("leave answers %v but remove answers %v: both are MembershipChange", shapes["MembershipChange"], removed)
	}
	for schema, v := range shapes {
		var fields []string
		for k := range v.(map[string]any) {
			fields = append(fields, k)
		}
		if props := doc.children("components", "schemas", schema, "properties"); !sameSet(props, fields) {
			t.Errorf("schema %s has properties %v, the API encodes %v", schema, props, fields)
		}
		if req := doc.items["components > schemas > "+schema+" > required"]; !sameSet(req, fields) {
			t.Errorf("schema %s requires %v, the API always encodes %v", schema, req, fields)
		}
	}
	if statuses := doc.items["components > schemas > MembershipChange > properties > status > enum"]; !sameSet(statuses, []string{"leaving", "removed"}) {
		t.Errorf("MembershipChange statuses %v, want [leaving removed]", statuses)
	}
	states := doc.items["components > schemas > Member > properties > state > enum"]
	if want := []string{node.StateAlive, node.StateSuspect, node.StateDead, node.StateLeft}; !sameSet(states, want) {
		t.Errorf("member states %v, want %v", states, want)
	}
}

// docPath turns a chi pattern into the document's path.
func docPath(route string) string {
	if p, ok := strings.CutSuffix(route, "/*"); ok {
		return p + "/{key}"
	}
	return route
}

type scenario struct {
	method, target, body string
	headers              []string
	setup                func(f *fakeService)
	want                 int
}

// runScenarios drives a request for every status the router can answer on
// each route, checks each got its status, and returns what the request
// metrics recorded ("METHOD /doc/path status", 405s and unmatched paths
// aside) and the error codes seen.
func runScenarios(t *testing.T) (observed, codes map[string]bool) {
	t.Helper()
	withValue := func(values ...string) func(f *fakeService) {
		return func(f *fakeService) {
			for _, v := range values {
				obj, _ := f.objects["k"].Write(testActor, nil, []byte(v), "text/plain", f.clock)
				f.objects["k"] = obj
			}
		}
	}
	failWith := func(err error) func(f *fakeService) { return func(f *fakeService) { f.err = err } }
	explode := func(f *fakeService) { f.panics = true }
	removeFails := func(err error) func(f *fakeService) { return func(f *fakeService) { f.removeErr = err } }
	notReady := func(f *fakeService) { f.ready = false }
	var etag string
	{
		f := newFakeService()
		withValue("v")(f)
		etag = f.objects["k"].ETag()
	}

	scenarios := []scenario{
		{method: "PUT", target: "/keys/k", body: "v", want: 204},
		{method: "PUT", target: "/keys/k?w=9", body: "v", want: 400},
		{method: "PUT", target: "/keys/k", body: strings.Repeat("v", testMaxValue+1), want: 413},
		{method: "PUT", target: "/keys/k", body: "v", setup: explode, want: 500},
		{method: "PUT", target: "/keys/k", body: "v", setup: failWith(node.ErrUnavailable), want: 503},
		{method: "PUT", target: "/keys/k", body: "v", setup: failWith(node.ErrTooManySiblings), want: 409},
		{method: "GET", target: "/keys/k", setup: withValue("v"), want: 200},
		{method: "GET", target: "/keys/k", setup: withValue("v", "w"), want: 300},
		{method: "GET", target: "/keys/k", setup: withValue("v"), headers: []string{"If-None-Match", etag}, want: 304},
		{method: "GET", target: "/keys/", want: 400},
		{method: "GET", target: "/keys/k", want: 404},
		{method: "GET", target: "/keys/k", setup: failWith(fmt.Errorf("boom")), want: 500},
		{method: "GET", target: "/keys/k", setup: failWith(node.ErrNoReplicas), want: 503},
		{method: "DELETE", target: "/keys/k", want: 204},
		{method: "DELETE", target: "/keys/k", headers: []string{"X-Context", "!"}, want: 400},
		{method: "DELETE", target: "/keys/k", setup: explode, want: 500},
		{method: "DELETE", target: "/keys/k", setup: failWith(node.ErrNotReady), want: 503},
		{method: "GET", target: "/healthz", want: 200},
		{method: "GET", target: "/readyz", want: 200},
		{method: "GET", target: "/readyz", setup: explode, want: 500},
		{method: "GET", target: "/readyz", setup: notReady, want: 503},
		{method: "GET", target: "/metrics", want: 200},
		{method: "GET", target: "/ui", want: 200},
		{method: "GET", target: "/ui", setup: explode, want: 500},
		{method: "GET", target: "/cluster", want: 200},
		{method: "GET", target: "/cluster", setup: explode, want: 500},
		{method: "GET", target: "/cluster/keys/a/b", want: 200},
		{method: "GET", target: "/cluster/keys/%00", want: 400},
		{method: "GET", target: "/cluster/keys/k", setup: explode, want: 500},
		{method: "GET", target: "/cluster/ring", want: 200},
		{method: "GET", target: "/cluster/ring", setup: explode, want: 500},
		{method: "POST", target: "/cluster/leave", want: 202},
		{method: "POST", target: "/cluster/leave", setup: explode, want: 500},
		{method: "POST", target: "/cluster/remove/node-c", want: 202},
		{method: "POST", target: "/cluster/remove/node-x", setup: removeFails(node.ErrUnknownMember), want: 404},
		{method: "POST", target: "/cluster/remove/node-b", setup: removeFails(node.ErrMemberAlive), want: 409},
		{method: "POST", target: "/cluster/remove/node-c", setup: explode, want: 500},
		// Not in observed (a 405 is not a status of the operation), but it
		// must be the documented MethodNotAllowed answer.
		{method: "POST", target: "/keys/k", want: 405},
		{method: "GET", target: "/cluster/leave", want: 405},
		{method: "DELETE", target: "/cluster/remove/node-c", want: 405},
	}
	reg := prometheus.NewRegistry()
	codes = map[string]bool{}
	for _, sc := range scenarios {
		svc := newFakeService()
		if sc.setup != nil {
			sc.setup(svc)
		}
		h := New(svc, Options{Registry: reg, MaxValueBytes: testMaxValue, Logger: discardLogger()})
		var body *strings.Reader
		if sc.body != "" {
			body = strings.NewReader(sc.body)
		}
		req := httptest.NewRequest(sc.method, sc.target, nil)
		if body != nil {
			req = httptest.NewRequest(sc.method, sc.target, body)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, withHeaders(req, sc.headers...))
		if rec.Code != sc.want {
			t.Errorf("scenario %s %s: status %d, want %d", sc.method, sc.target, rec.Code, sc.want)
		}
		if rec.Code >= 400 {
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Errorf("scenario %s %s: error body %q: %v", sc.method, sc.target, rec.Body, err)
			}
			codes[e.Code] = true
		}
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	observed = map[string]bool{}
	for _, f := range families {
		if f.GetName() != "dynamo_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := labelsOf(m)
			if l["route"] == unmatchedRoute || l["code"] == "405" {
				continue
			}
			observed[l["method"]+" "+docPath(l["route"])+" "+l["code"]] = true
		}
	}
	return observed, codes
}

func getJSON(t *testing.T, h *harness, target string) any {
	t.Helper()
	var v any
	rec := h.do(http.MethodGet, target, "")
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return v
}

// postJSON POSTs to target with no body and decodes the 202 answer.
func postJSON(t *testing.T, h *harness, target string) any {
	t.Helper()
	var v any
	rec := h.do(http.MethodPost, target, "")
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST %s: status %d, body %s", target, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	return v
}

// codeConstants reads the values of the code* constants of errors.go.
func codeConstants(t *testing.T) []string {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(file, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range spec.Names {
			if !strings.HasPrefix(name.Name, "code") || i >= len(spec.Values) {
				continue
			}
			if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				codes = append(codes, v)
			}
		}
		return true
	})
	if len(codes) < 10 {
		t.Fatalf("found only %d code constants in errors.go: %v", len(codes), codes)
	}
	return codes
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b)) && len(a) > 0
}

// yamlOutline is what readOutline extracts from a block-style YAML document:
// every mapping key, its scalar value, and the scalar items of sequences,
// each by its path of keys from the root joined with " > ". It is no general
// YAML parser: it understands the subset openapi.yaml is written in (block
// mappings and sequences, flow sequences of plain scalars, | and > block
// scalars) and fails the test on any other line rather than misread it.
type yamlOutline struct {
	value      map[string]string   // path -> scalar value ("" for a parent)
	items      map[string][]string // path -> sequence items that are scalars
	childOrder map[string][]string // path -> keys directly under it
}

func (o *yamlOutline) has(path ...string) bool {
	_, ok := o.value[strings.Join(path, " > ")]
	return ok
}

// children lists the keys directly under path, in document order.
func (o *yamlOutline) children(path ...string) []string {
	return o.childOrder[strings.Join(path, " > ")]
}

func readOutline(t *testing.T, name string) *yamlOutline {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := &yamlOutline{value: map[string]string{}, items: map[string][]string{}, childOrder: map[string][]string{}}
	type level struct {
		indent int
		key    string
	}
	var stack []level
	path := func() string {
		keys := make([]string, 0, len(stack))
		for _, l := range stack {
			if l.key != "-" {
				keys = append(keys, l.key)
			}
		}
		return strings.Join(keys, " > ")
	}
	blockScalar := -1 // indent of the key whose | or > scalar is being skipped
	sc := bufio.NewScanner(f)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimRight(sc.Text(), " \r")
		content := strings.TrimLeft(line, " ")
		indent := len(line) - len(content)
		if content == "" {
			continue
		}
		if blockScalar >= 0 {
			if indent > blockScalar {
				continue
			}
			blockScalar = -1
		}
		if strings.HasPrefix(content, "#") {
			continue
		}
		if strings.HasPrefix(line, "\t") {
			t.Fatalf("%s:%d: tab indentation", name, lineNo)
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		if item, ok := strings.CutPrefix(content, "- "); ok {
			if _, _, isMap := splitKey(item); !isMap {
				o.items[path()] = append(o.items[path()], unquote(item))
				continue
			}
			// "- key: value" opens a mapping inside the sequence.
			stack = append(stack, level{indent, "-"})
			indent += 2
			content = item
		}
		key, value, ok := splitKey(content)
		if !ok {
			t.Fatalf("%s:%d: not a construct this test understands: %q", name, lineNo, line)
		}
		parent := path()
		stack = append(stack, level{indent, key})
		p := path()
		inSequence := slices.ContainsFunc(stack, func(l level) bool { return l.key == "-" })
		if _, dup := o.value[p]; dup && !inSequence {
			t.Fatalf("%s:%d: duplicate key %s", name, lineNo, p)
		}
		o.value[p] = value
		o.childOrder[parent] = append(o.childOrder[parent], key)
		switch {
		case value == "|" || value == ">" || value == "|-" || value == ">-":
			blockScalar = indent
		case strings.HasPrefix(value, "["):
			inner, ok := strings.CutSuffix(strings.TrimPrefix(value, "["), "]")
			if !ok {
				t.Fatalf("%s:%d: multi-line flow sequence", name, lineNo)
			}
			for _, it := range strings.Split(inner, ",") {
				o.items[p] = append(o.items[p], unquote(strings.TrimSpace(it)))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(o.children("paths")) == 0 {
		t.Fatalf("%s: no paths found", name)
	}
	return o
}

// splitKey splits "key: value" or "key:"; keys may be quoted.
func splitKey(s string) (key, value string, ok bool) {
	if s != "" && (s[0] == '\'' || s[0] == '"') {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", "", false
		}
		rest := s[end+2:]
		if rest != ":" && !strings.HasPrefix(rest, ": ") {
			return "", "", false
		}
		return s[1 : end+1], strings.TrimSpace(strings.TrimPrefix(rest, ":")), true
	}
	if k, ok := strings.CutSuffix(s, ":"); ok && !strings.Contains(k, ": ") {
		return k, "", true
	}
	k, v, ok := strings.Cut(s, ": ")
	if !ok || strings.ContainsAny(k, "`'\"") {
		return "", "", false
	}
	return k, strings.TrimSpace(v), true
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
