package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	if got := keysOf(m); !slices.Equal(got, []string{"addr", "bytes_moved", "gossip_addr", "hints_pending", "id", "leaving",
		"p99_seconds", "partitions", "partitions_in_transfer", "peer_addr", "requests_per_second", "state"}) {
		t.Fatalf("member fields %v", got)
	}
	if m["id"] != "node-b" || m["addr"] != "10.0.0.2:8080" || m["peer_addr"] != "10.0.0.2:8081" ||
		m["gossip_addr"] != "10.0.0.2:7946" || m["state"] != "suspect" || m["leaving"] != true ||
		m["partitions"] != 3.0 || m["partitions_in_transfer"] != 0.0 || m["bytes_moved"] != 0.0 {
		t.Fatalf("member %v", m)
	}
	if a, _ := members[0].(map[string]any); a["leaving"] != false || a["partitions"] != 5.0 ||
		a["partitions_in_transfer"] != 2.0 || a["bytes_moved"] != 123456.0 {
		t.Fatalf("member %v", a)
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

// wantAccepted checks rec is the 202 JSON answer {"status": status, "id": id}.
func wantAccepted(t *testing.T, rec *httptest.ResponseRecorder, status, id string) {
	t.Helper()
	if rec.Code != http.StatusAccepted || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q, body %s; want 202 JSON", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if len(v) != 2 || v["status"] != status || v["id"] != id {
		t.Fatalf("body %v, want status %q and id %q", v, status, id)
	}
}

func TestClusterLeave(t *testing.T) {
	h := newHarness(t)
	// Idempotent: every call is accepted; the node ignores the repeats.
	for i := 1; i <= 2; i++ {
		wantAccepted(t, h.do(http.MethodPost, "/cluster/leave", ""), "leaving", "node-a")
		if leaves, removed := h.svc.membershipCalls(); leaves != i || len(removed) != 0 {
			t.Fatalf("after %d calls: Leave called %d times, Remove with %q", i, leaves, removed)
		}
	}

	h.svc.set(func(f *fakeService) { f.leaveErr = node.ErrNotReady })
	wantError(t, h.do(http.MethodPost, "/cluster/leave", ""), http.StatusServiceUnavailable, codeNotReady)

	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		rec := h.do(m, "/cluster/leave", "")
		wantError(t, rec, http.StatusMethodNotAllowed, codeMethodNotAllowed)
		if got := rec.Header().Get("Allow"); got != "POST" {
			t.Fatalf("%s /cluster/leave: Allow %q, want POST", m, got)
		}
	}
	if leaves, _ := h.svc.membershipCalls(); leaves != 3 {
		t.Fatalf("Leave called %d times, want 3: a 405 must not reach it", leaves)
	}
}

func TestClusterRemove(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ target, id string }{
		{"/cluster/remove/node-c", "node-c"},
		{"/cluster/remove/node-%3Cc%3E", "node-<c>"},
		{"/cluster/remove/rack%2F1", "rack/1"},  // an escaped slash is part of the id
		{"/cluster/remove/100%25", "100%"},      // decoded once, not twice
		{"/cluster/remove/a%20b", "a b"},        // Go keeps no RawPath for this one
		{"/cluster/remove/%E2%9C%93", "\u2713"}, // UTF-8
	} {
		wantAccepted(t, h.do(http.MethodPost, tc.target, ""), "removed", tc.id)
		if _, removed := h.svc.membershipCalls(); removed[len(removed)-1] != tc.id {
			t.Fatalf("POST %s: Remove called with %q, want %q", tc.target, removed[len(removed)-1], tc.id)
		}
	}

	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{node.ErrUnknownMember, http.StatusNotFound, codeUnknownMember},
		{fmt.Errorf("%w: %q", node.ErrUnknownMember, "node-x"), http.StatusNotFound, codeUnknownMember},
		{node.ErrMemberAlive, http.StatusConflict, codeMemberAlive},
		{fmt.Errorf("%w: %q", node.ErrMemberAlive, "node-b"), http.StatusConflict, codeMemberAlive},
		{errors.New("disk on fire"), http.StatusInternalServerError, codeInternal},
	} {
		h.svc.set(func(f *fakeService) { f.removeErr = tc.err })
		rec := h.do(http.MethodPost, "/cluster/remove/node-x", "")
		wantError(t, rec, tc.status, tc.code)
		if strings.Contains(rec.Body.String(), "node:") || strings.Contains(rec.Body.String(), "fire") {
			t.Fatalf("error %v leaked into the answer %s", tc.err, rec.Body)
		}
	}

	calls := func() int { _, removed := h.svc.membershipCalls(); return len(removed) }
	before := calls()
	// No id, or more than one path segment: no such route.
	wantError(t, h.do(http.MethodPost, "/cluster/remove/", ""), http.StatusNotFound, codeNoRoute)
	wantError(t, h.do(http.MethodPost, "/cluster/remove", ""), http.StatusNotFound, codeNoRoute)
	wantError(t, h.do(http.MethodPost, "/cluster/remove/a/b", ""), http.StatusNotFound, codeNoRoute)
	// Invalid percent-encoding (only reachable behind something that passes it through).
	wantError(t, h.serve(rawPathRequest(http.MethodPost, "/cluster/remove/%zz")), http.StatusNotFound, codeUnknownMember)
	rec := h.do(http.MethodGet, "/cluster/remove/node-c", "")
	wantError(t, rec, http.StatusMethodNotAllowed, codeMethodNotAllowed)
	if got := rec.Header().Get("Allow"); got != "POST" {
		t.Fatalf("GET /cluster/remove/node-c: Allow %q, want POST", got)
	}
	if got := calls(); got != before {
		t.Fatalf("Remove called %d more times by rejected requests", got-before)
	}
}
