package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/dynamo-kv/dynamo/node"
)

// decodeJSON decodes a 200 JSON answer into a generic value, so the tests
// check the wire shape rather than Go's view of it.
func decodeJSON(t *testing.T, h *harness, target string) map[string]any {
	t.Helper()
	rec := h.do(http.MethodGet, target, "")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: status %d, Content-Type %q, body %s", target, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return v
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestCluster(t *testing.T) {
	h := newHarness(t)
	v := decodeJSON(t, h, "/cluster")
	if got := keysOf(v); !slices.Equal(got, []string{"id", "members", "n", "partitions", "r", "w"}) {
		t.Fatalf("fields %v", got)
	}
	if v["id"] != "node-a" || v["n"] != 3.0 || v["r"] != 2.0 || v["w"] != 2.0 || v["partitions"] != 8.0 {
		t.Fatalf("cluster %v", v)
	}
	members, _ := v["members"].([]any)
	if len(members) != 3 {
		t.Fatalf("members %v", v["members"])
	}
	m, _ := members[1].(map[string]any)
	if got := keysOf(m); !slices.Equal(got, []string{"addr", "gossip_addr", "id", "peer_addr", "state"}) {
		t.Fatalf("member fields %v", got)
	}
	if m["id"] != "node-b" || m["addr"] != "10.0.0.2:8080" || m["peer_addr"] != "10.0.0.2:8081" ||
		m["gossip_addr"] != "10.0.0.2:7946" || m["state"] != "suspect" {
		t.Fatalf("member %v", m)
	}

	h.svc.set(func(f *fakeService) { f.cluster.Members = nil })
	if got := decodeJSON(t, h, "/cluster")["members"]; got == nil {
		t.Fatal("no members must encode as [], not null")
	}
}

func TestClusterKey(t *testing.T) {
	h := newHarness(t)
	v := decodeJSON(t, h, "/cluster/keys/users/a%2F..%2Fb")
	if got := keysOf(v); !slices.Equal(got, []string{"key", "partition", "preference_list"}) {
		t.Fatalf("fields %v", got)
	}
	if v["key"] != "users/a/../b" || v["partition"] != 5.0 {
		t.Fatalf("key info %v", v)
	}
	if list, _ := v["preference_list"].([]any); len(list) != 3 || list[0] != "node-b" {
		t.Fatalf("preference list %v", v["preference_list"])
	}
	if got := h.svc.keyInfoKeys; len(got) != 1 || string(got[0]) != "users/a/../b" {
		t.Fatalf("KeyInfo saw %q: the key must be parsed as for /keys", got)
	}
}

func TestClusterRing(t *testing.T) {
	h := newHarness(t)
	v := decodeJSON(t, h, "/cluster/ring")
	if got := keysOf(v); !slices.Equal(got, []string{"n", "partitions", "preference_lists", "version"}) {
		t.Fatalf("fields %v", got)
	}
	if v["version"] != "r17" || v["partitions"] != 2.0 || v["n"] != 2.0 {
		t.Fatalf("ring %v", v)
	}
	lists, _ := v["preference_lists"].([]any)
	if len(lists) != 2 {
		t.Fatalf("preference lists %v", v["preference_lists"])
	}
	if first, _ := lists[0].([]any); len(first) != 2 || first[0] != "node-a" {
		t.Fatalf("first preference list %v", lists[0])
	}

	h.svc.set(func(f *fakeService) { f.ring = node.RingInfo{Version: "empty"} })
	if got := decodeJSON(t, h, "/cluster/ring")["preference_lists"]; got == nil {
		t.Fatal("no preference lists must encode as [], not null")
	}
}

func TestHealthz(t *testing.T) {
	h := newHarness(t)
	h.svc.set(func(f *fakeService) { f.ready = false })
	rec := h.do(http.MethodGet, "/healthz", "")
	if rec.Code != http.StatusOK || rec.Body.Len() == 0 || rec.Body.Len() > 16 {
		t.Fatalf("healthz of an unready node: status %d, body %q; want 200 and a tiny body", rec.Code, rec.Body)
	}
}

func TestReadyz(t *testing.T) {
	h := newHarness(t)
	if rec := h.do(http.MethodGet, "/readyz", ""); rec.Code != http.StatusOK {
		t.Fatalf("readyz of a ready node: status %d", rec.Code)
	}
	h.svc.set(func(f *fakeService) { f.ready = false })
	wantError(t, h.do(http.MethodGet, "/readyz", ""), http.StatusServiceUnavailable, codeNotReady)
}

func TestUI(t *testing.T) {
	h := newHarness(t)
	rec := h.do(http.MethodGet, "/ui", "")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	page := rec.Body.String()
	for _, want := range []string{
		"node-a", "node-b", "10.0.0.2:8081", ">suspect<", ">dead<",
		"node-&lt;c&gt;",                  // escaped, not markup
		`id="n">3<`, `id="partitions">8<`, // effective settings
		`fetch("cluster"`, "setInterval(refresh, 2000)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "node-<c>") {
		t.Error("a member id was rendered as markup")
	}
	for _, external := range []string{"http://", "https://", "src=", "<link"} {
		if strings.Contains(page, external) {
			t.Errorf("page references an external asset (%q)", external)
		}
	}
}
