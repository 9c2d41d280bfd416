package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestEndToEnd starts a three-node cluster of real processes once and
// checks the client contract through it. The subtests share the cluster and
// run in order; each uses keys of its own.
func TestEndToEnd(t *testing.T) {
	c := startCluster(t, 3)

	t.Run("cluster", c.testClusterRoutes)
	t.Run("put_get", c.testPutGet)
	t.Run("siblings", c.testSiblings)
	t.Run("delete", c.testDelete)
	t.Run("bad_input", c.testBadInput)
	t.Run("odd_keys", c.testOddKeys)
	t.Run("durability", c.testDurability)
	t.Run("sigterm", c.testSIGTERMMember)
}

// keyPath is the route of a key made of unreserved characters only.
func keyPath(key string) string { return "/keys/" + key }

// testClusterRoutes checks GET /cluster, /cluster/keys/{key}, /cluster/ring,
// /metrics, /healthz and /ui on every node.
func (c *cluster) testClusterRoutes(t *testing.T) {
	var firstPref []string
	for i, n := range c.nodes {
		r := c.do(t, i, http.MethodGet, "/cluster", nil)
		expect(t, r, http.StatusOK, "GET /cluster")
		expectJSON(t, r, "GET /cluster")
		var info clusterInfo
		if err := json.Unmarshal(r.body, &info); err != nil {
			t.Fatalf("GET /cluster on %s: %v in %q", n.id, err, r.body)
		}
		if info.ID != n.id || info.N != 3 || info.R != 2 || info.W != 2 || info.Partitions != 256 {
			t.Errorf("GET /cluster on %s: id=%q n=%d r=%d w=%d partitions=%d; want %q 3 2 2 256",
				n.id, info.ID, info.N, info.R, info.W, info.Partitions, n.id)
		}
		got := slices.Clone(info.Members)
		slices.SortFunc(got, func(a, b memberInfo) int { return strings.Compare(a.ID, b.ID) })
		var want []memberInfo
		for _, m := range c.nodes {
			want = append(want, memberInfo{ID: m.id, Addr: m.listen, PeerAddr: m.peer, GossipAddr: m.gossip, State: "alive"})
		}
		if !slices.Equal(got, want) {
			t.Errorf("GET /cluster on %s: members\n%+v\nwant\n%+v", n.id, got, want)
		}

		r = c.do(t, i, http.MethodGet, "/cluster/keys/some-key", nil)
		expect(t, r, http.StatusOK, "GET /cluster/keys/some-key")
		expectJSON(t, r, "GET /cluster/keys/some-key")
		var key struct {
			Key            string   `json:"key"`
			Partition      *int     `json:"partition"`
			PreferenceList []string `json:"preference_list"`
		}
		if err := json.Unmarshal(r.body, &key); err != nil {
			t.Fatalf("GET /cluster/keys/some-key on %s: %v in %q", n.id, err, r.body)
		}
		if key.Key != "some-key" || key.Partition == nil || *key.Partition < 0 || *key.Partition >= 256 {
			t.Errorf("GET /cluster/keys/some-key on %s: %s", n.id, r.body)
		}
		pref := slices.Clone(key.PreferenceList)
		slices.Sort(pref)
		if !slices.Equal(pref, []string{"n0", "n1", "n2"}) {
			t.Errorf("GET /cluster/keys/some-key on %s: preference_list %q, want 3 distinct member ids", n.id, key.PreferenceList)
		}
		if firstPref == nil {
			firstPref = key.PreferenceList
		} else if !slices.Equal(firstPref, key.PreferenceList) {
			t.Errorf("preference list of some-key: %q on %s, %q on n0", key.PreferenceList, n.id, firstPref)
		}

		r = c.do(t, i, http.MethodGet, "/cluster/ring", nil)
		expect(t, r, http.StatusOK, "GET /cluster/ring")
		expectJSON(t, r, "GET /cluster/ring")

		r = c.do(t, i, http.MethodGet, "/metrics", nil)
		expect(t, r, http.StatusOK, "GET /metrics")
		if !bytes.Contains(r.body, []byte("dynamo_http_requests_total")) {
			t.Errorf("GET /metrics on %s lacks dynamo_http_requests_total", n.id)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET /metrics on %s: Content-Type %q, want Prometheus text", n.id, ct)
		}

		expect(t, c.do(t, i, http.MethodGet, "/healthz", nil), http.StatusOK, "GET /healthz")
		r = c.do(t, i, http.MethodGet, "/ui", nil)
		expect(t, r, http.StatusOK, "GET /ui")
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /ui on %s: Content-Type %q, want HTML", n.id, ct)
		}
	}
}

func expectJSON(t *testing.T, r response, what string) {
	t.Helper()
	if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, r.header.Get("Content-Type"))
	}
}

// expectValue reads key through node i (query may be "" or "?local=true")
// and checks it is one live value with the given body and Content-Type. It
// returns the answer.
func (c *cluster) expectValue(t *testing.T, i int, path, query string, value []byte, contentType string) response {
	t.Helper()
	what := fmt.Sprintf("GET %s%s on %s", path, query, c.nodes[i].id)
	r := c.do(t, i, http.MethodGet, path+query, nil)
	expect(t, r, http.StatusOK, what)
	if !bytes.Equal(r.body, value) {
		t.Errorf("%s: body %q, want %q", what, trim(r.body), trim(value))
	}
	if ct := r.header.Get("Content-Type"); ct != contentType {
		t.Errorf("%s: Content-Type %q, want %q", what, ct, contentType)
	}
	expectContext(t, r, what)
	if r.header.Get("ETag") == "" {
		t.Errorf("%s: no ETag", what)
	}
	return r
}

// expectAbsent checks that key has no live value through node i.
func (c *cluster) expectAbsent(t *testing.T, i int, path, query string) response {
	t.Helper()
	what := fmt.Sprintf("GET %s%s on %s", path, query, c.nodes[i].id)
	r := c.do(t, i, http.MethodGet, path+query, nil)
	expectError(t, r, http.StatusNotFound, what)
	return r
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return append(b[:64:64], "..."...)
	}
	return b
}

// put writes value with the given Content-Type ("" sends none) and context
// ("" sends none) through node i and expects 204 with a context.
func (c *cluster) put(t *testing.T, i int, path string, value []byte, contentType, context string) string {
	t.Helper()
	var h []string
	if contentType != "" {
		h = append(h, "Content-Type", contentType)
	}
	if context != "" {
		h = append(h, "X-Context", context)
	}
	what := fmt.Sprintf("PUT %s on %s", path, c.nodes[i].id)
	r := c.do(t, i, http.MethodPut, path, value, h...)
	expect(t, r, http.StatusNoContent, what)
	if len(r.body) != 0 {
		t.Errorf("%s: 204 with a body %q", what, r.body)
	}
	return expectContext(t, r, what)
}

// testPutGet writes keys through every node and reads each through every node.
func (c *cluster) testPutGet(t *testing.T) {
	const keys = 30
	for k := range keys {
		path := keyPath(fmt.Sprintf("pg-%02d", k))
		value := []byte(fmt.Sprintf("value of key %d written through n%d", k, k%3))
		ct := fmt.Sprintf("application/x-e2e-%d", k)
		if k%2 == 0 {
			ct = "text/plain; charset=utf-8"
		}
		c.put(t, k%len(c.nodes), path, value, ct, "")
		for i := range c.nodes {
			r := c.expectValue(t, i, path, "", value, ct)
			etag := r.header.Get("ETag")
			r = c.do(t, i, http.MethodGet, path, nil, "If-None-Match", etag)
			expect(t, r, http.StatusNotModified, fmt.Sprintf("GET %s If-None-Match: %s on n%d", path, etag, i))
			if len(r.body) != 0 {
				t.Errorf("304 with a body %q", r.body)
			}
		}
	}

	// No Content-Type stores application/octet-stream; an empty value is a value.
	c.put(t, 0, keyPath("pg-untyped"), []byte("raw"), "", "")
	c.put(t, 1, keyPath("pg-empty"), []byte{}, "text/plain", "")
	for i := range c.nodes {
		c.expectValue(t, i, keyPath("pg-untyped"), "", []byte("raw"), "application/octet-stream")
		c.expectValue(t, i, keyPath("pg-empty"), "", []byte{}, "text/plain")
	}

	// A write with the context of a read supersedes what was read: no siblings.
	path := keyPath("pg-overwrite")
	c.put(t, 0, path, []byte("v1"), "text/plain", "")
	ctx := expectContext(t, c.expectValue(t, 1, path, "", []byte("v1"), "text/plain"), "read v1")
	c.put(t, 2, path, []byte("v2"), "text/plain", ctx)
	for i := range c.nodes {
		c.expectValue(t, i, path, "", []byte("v2"), "text/plain")
	}
}

// testSiblings makes two concurrent writes, reads them as multipart siblings
// and resolves them.
func (c *cluster) testSiblings(t *testing.T) {
	path := keyPath("sib")
	want := map[string]string{ // body -> Content-Type
		"left sibling":    "text/plain",
		`{"right":"yes"}`: "application/json",
	}
	c.put(t, 0, path, []byte("left sibling"), "text/plain", "")
	c.put(t, 1, path, []byte(`{"right":"yes"}`), "application/json", "")

	var context string
	for i := range c.nodes {
		what := fmt.Sprintf("GET %s on n%d", path, i)
		r := c.do(t, i, http.MethodGet, path, nil)
		expect(t, r, http.StatusMultipleChoices, what)
		context = expectContext(t, r, what)
		ct := r.header.Get("Content-Type")
		if !strings.HasPrefix(ct, "multipart/mixed; boundary=") {
			t.Errorf("%s: Content-Type %q, want multipart/mixed; boundary=...", what, ct)
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
			t.Fatalf("%s: Content-Type %q: %v", what, ct, err)
		}
		got := map[string]string{}
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: reading the multipart body: %v\n%s", what, err, r.body)
			}
			body, err := io.ReadAll(part)
			if err != nil {
				t.Fatalf("%s: reading a part: %v", what, err)
			}
			got[string(body)] = part.Header.Get("Content-Type")
			if lm := part.Header.Get("Last-Modified"); lm == "" {
				t.Errorf("%s: part %q has no Last-Modified", what, body)
			} else if _, err := http.ParseTime(lm); err != nil {
				t.Errorf("%s: part %q: Last-Modified %q: %v", what, body, lm, err)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: parts %q, want %q", what, got, want)
		}
		for body, ct := range want {
			if got[body] != ct {
				t.Errorf("%s: parts %q, want %q", what, got, want)
				break
			}
		}
	}

	c.put(t, 2, path, []byte("resolved"), "text/plain", context)
	for i := range c.nodes {
		c.expectValue(t, i, path, "", []byte("resolved"), "text/plain")
	}
}

// testDelete deletes with and without a context, and a key never written.
func (c *cluster) testDelete(t *testing.T) {
	// With the context of a read.
	path := keyPath("del-with-context")
	c.put(t, 0, path, []byte("doomed"), "text/plain", "")
	ctx := expectContext(t, c.expectValue(t, 1, path, "", []byte("doomed"), "text/plain"), "read")
	r := c.do(t, 2, http.MethodDelete, path, nil, "X-Context", ctx)
	expect(t, r, http.StatusNoContent, "DELETE with X-Context")
	expectContext(t, r, "DELETE with X-Context")
	var tombstone string
	for i := range c.nodes {
		r := c.expectAbsent(t, i, path, "")
		tombstone = expectContext(t, r, fmt.Sprintf("404 of a deleted key on n%d", i))
	}
	// A write with the 404's context is the only value: what was deleted
	// does not come back as a sibling.
	c.put(t, 0, path, []byte("reborn"), "text/plain", tombstone)
	for i := range c.nodes {
		c.expectValue(t, i, path, "", []byte("reborn"), "text/plain")
	}

	// Without a context: the coordinator deletes what it reads.
	path = keyPath("del-without-context")
	c.put(t, 1, path, []byte("doomed too"), "text/plain", "")
	r = c.do(t, 0, http.MethodDelete, path, nil)
	expect(t, r, http.StatusNoContent, "DELETE without X-Context")
	expectContext(t, r, "DELETE without X-Context")
	for i := range c.nodes {
		c.expectAbsent(t, i, path, "")
	}

	// Never written: still 204 with a context.
	path = keyPath("del-never-written")
	r = c.do(t, 1, http.MethodDelete, path, nil)
	expect(t, r, http.StatusNoContent, "DELETE of a key never written")
	expectContext(t, r, "DELETE of a key never written")
	for i := range c.nodes {
		c.expectAbsent(t, i, path, "")
	}
}

// testBadInput sends every kind of bad input of the contract and checks the
// answer and that nothing stored changed.
func (c *cluster) testBadInput(t *testing.T) {
	// The key the bad requests aim at holds a value on every replica, so
	// that each replica's copy can be compared afterwards.
	const held = "bad-held"
	heldPath := keyPath(held)
	heldValue := []byte("the original value")
	r := c.do(t, 0, http.MethodPut, heldPath+"?w=all", heldValue, "Content-Type", "text/plain")
	expect(t, r, http.StatusNoContent, "PUT ?w=all")
	before := c.etags(t, heldPath, heldValue)

	// A key no request may create.
	const freshPath = "/keys/bad-fresh"

	longKey := strings.Repeat("k", 1025)
	garbage := base64.RawURLEncoding.EncodeToString([]byte("this is not a context at all"))
	garbage2 := base64.RawURLEncoding.EncodeToString([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	over := bytes.Repeat([]byte("o"), maxValueBytes+1)
	newValue := []byte("must not be stored")

	cases := []struct {
		name   string
		method string
		path   string
		body   []byte
		header []string
		status int
	}{
		{"put long key", http.MethodPut, "/keys/" + longKey, newValue, nil, 400},
		{"get long key", http.MethodGet, "/keys/" + longKey, nil, nil, 400},
		{"delete long key", http.MethodDelete, "/keys/" + longKey, nil, nil, 400},
		{"put empty key", http.MethodPut, "/keys/", newValue, nil, 400},
		{"get empty key", http.MethodGet, "/keys/", nil, nil, 400},
		{"delete empty key", http.MethodDelete, "/keys/", nil, nil, 400},
		{"cluster empty key", http.MethodGet, "/cluster/keys/", nil, nil, 400},
		{"cluster long key", http.MethodGet, "/cluster/keys/" + longKey, nil, nil, 400},

		{"put context !!!", http.MethodPut, heldPath, newValue, []string{"X-Context", "!!!"}, 400},
		{"put context garbage", http.MethodPut, heldPath, newValue, []string{"X-Context", garbage}, 400},
		{"put context garbage 2", http.MethodPut, heldPath, newValue, []string{"X-Context", garbage2}, 400},
		{"put fresh context !!!", http.MethodPut, freshPath, newValue, []string{"X-Context", "!!!"}, 400},
		{"put fresh context garbage", http.MethodPut, freshPath, newValue, []string{"X-Context", garbage}, 400},
		{"delete context !!!", http.MethodDelete, heldPath, nil, []string{"X-Context", "!!!"}, 400},
		{"delete context garbage", http.MethodDelete, heldPath, nil, []string{"X-Context", garbage}, 400},
		{"delete context garbage 2", http.MethodDelete, heldPath, nil, []string{"X-Context", garbage2}, 400},

		{"put w=0", http.MethodPut, heldPath + "?w=0", newValue, nil, 400},
		{"put w=4", http.MethodPut, heldPath + "?w=4", newValue, nil, 400},
		{"put w=abc", http.MethodPut, heldPath + "?w=abc", newValue, nil, 400},
		{"put fresh w=4", http.MethodPut, freshPath + "?w=4", newValue, nil, 400},
		{"delete w=0", http.MethodDelete, heldPath + "?w=0", nil, nil, 400},
		{"delete w=4", http.MethodDelete, heldPath + "?w=4", nil, nil, 400},
		{"delete w=abc", http.MethodDelete, heldPath + "?w=abc", nil, nil, 400},
		{"get r=0", http.MethodGet, heldPath + "?r=0", nil, nil, 400},
		{"get r=4", http.MethodGet, heldPath + "?r=4", nil, nil, 400},
		{"get r=abc", http.MethodGet, heldPath + "?r=abc", nil, nil, 400},

		{"put over limit", http.MethodPut, heldPath, over, nil, 413},
		{"put fresh over limit", http.MethodPut, freshPath, over, nil, 413},

		{"post", http.MethodPost, heldPath, newValue, nil, 405},
		{"patch", http.MethodPatch, heldPath, newValue, nil, 405},
	}
	for k, tc := range cases {
		i := k % len(c.nodes)
		what := fmt.Sprintf("%s: %s %s on n%d", tc.name, tc.method, trim([]byte(tc.path)), i)
		r := c.do(t, i, tc.method, tc.path, tc.body, tc.header...)
		expectError(t, r, tc.status, what)
		if tc.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", what)
		}
	}

	// Go's HTTP server answers a request target that is not valid
	// percent-encoding itself, before any handler; the node's server turns
	// that answer into the JSON error (api/connerrors.go).
	for k, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
		r := c.do(t, k, method, "/keys/bad-fresh%zz", nil)
		if code := expectError(t, r, http.StatusBadRequest, method+" /keys/bad-fresh%zz"); code != "bad_request" {
			t.Errorf("%s /keys/bad-fresh%%zz: code %q, want bad_request", method, code)
		}
	}

	// A body of unknown length (chunked) is held to the same limit.
	for k, path := range []string{heldPath, freshPath} {
		r, err := c.send(k, http.MethodPut, path, io.MultiReader(bytes.NewReader(over)))
		if err != nil {
			t.Fatalf("chunked PUT %s: %v", path, err)
		}
		expectError(t, r, http.StatusRequestEntityTooLarge, "chunked PUT over the limit")
	}

	// Nothing changed: every replica holds the same version as before, and
	// no request created the fresh key.
	after := c.etags(t, heldPath, heldValue)
	if !slices.Equal(before, after) {
		t.Errorf("ETags of %s changed: before %q, after %q", held, before, after)
	}
	for i := range c.nodes {
		c.expectAbsent(t, i, freshPath, "?local=true")
		c.expectAbsent(t, i, freshPath, "")
	}

	// The limits themselves are accepted.
	atLimit := bytes.Repeat([]byte("v"), maxValueBytes)
	c.put(t, 1, keyPath("bad-at-limit"), atLimit, "application/octet-stream", "")
	r, err := c.send(0, http.MethodPut, keyPath("bad-at-limit-chunked"), io.MultiReader(bytes.NewReader(atLimit)))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, r, http.StatusNoContent, "chunked PUT at the limit")
	longest := "/keys/" + strings.Repeat("k", 1024)
	c.put(t, 2, longest, []byte("longest key"), "text/plain", "")
	for i := range c.nodes {
		c.expectValue(t, i, keyPath("bad-at-limit"), "", atLimit, "application/octet-stream")
		c.expectValue(t, i, keyPath("bad-at-limit-chunked"), "", atLimit, "application/octet-stream")
		c.expectValue(t, i, longest, "", []byte("longest key"), "text/plain")
	}
}

// etags checks that key holds value on every node's own copy and through a
// normal read of every node, and returns the ETags seen, local ones first.
func (c *cluster) etags(t *testing.T, path string, value []byte) []string {
	t.Helper()
	var tags []string
	for _, query := range []string{"?local=true", ""} {
		for i := range c.nodes {
			r := c.expectValue(t, i, path, query, value, "text/plain")
			tags = append(tags, r.header.Get("ETag"))
		}
	}
	return tags
}

// testOddKeys checks that keys are taken literally after one
// percent-decoding: no path cleaning, and %2F is a slash inside the key.
func (c *cluster) testOddKeys(t *testing.T) {
	// Each raw path names a different key (its decoded form on the right).
	keys := []struct{ raw, key string }{
		{"odd/x", "odd/x"},
		{"odd//x", "odd//x"},
		{"odd/x/", "odd/x/"},
		{"odd/./x", "odd/./x"},
		{"odd/../x", "odd/../x"},
		{".", "."},
		{"..", ".."},
		{"odd/.", "odd/."},
		{"odd%2Fy", "odd/y"},
		{"odd%252Fx", "odd%2Fx"},
		{"odd%20space", "odd space"},
	}
	for k, key := range keys {
		c.put(t, k%len(c.nodes), "/keys/"+key.raw, []byte("value of "+key.key), "text/plain", "")
	}
	for i := range c.nodes {
		for _, key := range keys {
			c.expectValue(t, i, "/keys/"+key.raw, "", []byte("value of "+key.key), "text/plain")
		}
		// The escaped and the plain slash are one key.
		c.expectValue(t, i, "/keys/odd/y", "", []byte("value of odd/y"), "text/plain")
	}
	for _, key := range keys {
		r := c.do(t, 0, http.MethodGet, "/cluster/keys/"+key.raw, nil)
		expect(t, r, http.StatusOK, "GET /cluster/keys/"+key.raw)
		var info struct {
			Key string `json:"key"`
		}
		if err := json.Unmarshal(r.body, &info); err != nil || info.Key != key.key {
			t.Errorf("GET /cluster/keys/%s: %s, want key %q", key.raw, r.body, key.key)
		}
	}
}

// testDurability writes at W=all, SIGKILLs a node at once, restarts it and
// reads every write from its own store.
func (c *cluster) testDurability(t *testing.T) {
	const keys = 200
	const victim = 1
	value := func(k int) []byte { return []byte(fmt.Sprintf("durable value %03d", k)) }
	for k := range keys {
		path := keyPath(fmt.Sprintf("dur-%03d", k)) + "?w=all"
		r := c.do(t, k%len(c.nodes), http.MethodPut, path, value(k), "Content-Type", "text/plain")
		expect(t, r, http.StatusNoContent, "PUT "+path)
	}
	c.kill9(t, victim)
	c.start(t, victim)
	c.waitReady(t, victim)
	missing := 0
	for k := range keys {
		path := keyPath(fmt.Sprintf("dur-%03d", k)) + "?local=true"
		r := c.do(t, victim, http.MethodGet, path, nil)
		if r.status != http.StatusOK || !bytes.Equal(r.body, value(k)) {
			missing++
			if missing <= 5 {
				t.Errorf("after kill -9 and restart, GET %s on n%d: %v, want 200 %q", path, victim, r, value(k))
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes at w=all missing on the restarted node", missing, keys)
	}
	c.waitMembers(t, len(c.nodes))
}

// testSIGTERMMember stops a member with SIGTERM: it exits 0 promptly, and the
// two others still take writes at the default W=2.
func (c *cluster) testSIGTERMMember(t *testing.T) {
	const member = 2
	c.sigterm(t, member)

	c.put(t, 0, keyPath("after-sigterm"), []byte("still writable"), "text/plain", "")
	c.expectValue(t, 1, keyPath("after-sigterm"), "", []byte("still writable"), "text/plain")
}

// TestGracefulShutdown stops a single node with SIGTERM: it exits 0, and
// the acknowledged write is there after a restart. The silent cases hold a
// connection open that never sends a request, as an HTTP client's spare
// connection (Go's Transport makes them) or a load balancer's TCP probe
// does: it is no request in flight and must not turn the exit into a
// failure.
func TestGracefulShutdown(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		c := startCluster(t, 1)
		r := c.do(t, 0, http.MethodGet, "/cluster", nil)
		var info clusterInfo
		if err := json.Unmarshal(r.body, &info); err != nil {
			t.Fatalf("GET /cluster: %v in %q", err, r.body)
		}
		if info.N != 1 || info.R != 1 || info.W != 1 {
			t.Errorf("one member: GET /cluster says n=%d r=%d w=%d, want all capped at 1", info.N, info.R, info.W)
		}

		c.put(t, 0, keyPath("kept"), []byte("kept across SIGTERM"), "text/plain", "")
		c.sigterm(t, 0)
		c.start(t, 0)
		c.waitReady(t, 0)
		c.expectValue(t, 0, keyPath("kept"), "?local=true", []byte("kept across SIGTERM"), "text/plain")
	})

	silent := func(addr func(*node) string) func(*testing.T) {
		return func(t *testing.T) {
			c := startCluster(t, 1)
			conn, err := net.Dial("tcp", addr(c.nodes[0]))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c.sigterm(t, 0)
		}
	}
	t.Run("silent_peer_connection", silent(func(n *node) string { return n.peer }))
	t.Run("silent_client_connection", silent(func(n *node) string { return n.listen }))
}

// sigterm stops node i with SIGTERM and expects it to exit 0 in time.
func (c *cluster) sigterm(t *testing.T, i int) {
	t.Helper()
	c.signal(t, i, syscall.SIGTERM)
	took, err := c.waitExit(t, i, shutdownTimeout)
	if err != nil {
		t.Fatalf("after SIGTERM, n%d exited with %v after %v, want 0", i, err, took)
	}
	t.Logf("n%d exited 0 %v after SIGTERM", i, took)
}
