package api

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/dynamo-kv/dynamo/node"
)

// cluster is GET /cluster: this node's view of the membership and the
// effective quorums.
func (s *server) cluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, clusterView(s.svc.Cluster()))
}

// clusterView fixes the JSON shape of info: an empty list is [], never null.
func clusterView(info node.ClusterInfo) node.ClusterInfo {
	if info.Members == nil {
		info.Members = []node.MemberInfo{}
	}
	return info
}

// clusterKey is GET /cluster/keys/{key}: the key's partition and preference
// list, coordinator first. The key is parsed as for /keys/{key}.
func (s *server) clusterKey(w http.ResponseWriter, r *http.Request) {
	key, err := keyFromPath(r, "/cluster/keys/")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info := s.svc.KeyInfo(key)
	if info.PreferenceList == nil {
		info.PreferenceList = []string{}
	}
	writeJSON(w, http.StatusOK, info)
}

// clusterRing is GET /cluster/ring: every partition's preference list and the
// ring version, for clients that route by themselves.
func (s *server) clusterRing(w http.ResponseWriter, r *http.Request) {
	ring := s.svc.Ring()
	lists := make([][]string, len(ring.PreferenceLists))
	for i, l := range ring.PreferenceLists {
		if l == nil {
			l = []string{}
		}
		lists[i] = l
	}
	ring.PreferenceLists = lists
	writeJSON(w, http.StatusOK, ring)
}

// membershipChange is the 202 answer of POST /cluster/leave and
// POST /cluster/remove/{id}.
type membershipChange struct {
	Status string `json:"status"` // "leaving" or "removed"
	ID     string `json:"id"`     // the node leaving, or the member removed
}

// clusterLeave is POST /cluster/leave: this node starts handing off its data
// and leaves once that is done. It answers at once, and again 202 on a
// repeated call while the hand-off runs.
func (s *server) clusterLeave(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.Leave(); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, membershipChange{Status: "leaving", ID: s.svc.Cluster().ID})
}

// clusterRemove is POST /cluster/remove/{id}: forget a member that died for
// good.
func (s *server) clusterRemove(w http.ResponseWriter, r *http.Request) {
	id, err := memberFromPath(r, "/cluster/remove/")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.svc.Remove(id); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, membershipChange{Status: "removed", ID: id})
}

// memberFromPath returns the member id of a request to prefix+"{id}": the
// rest of the escaped path, percent-decoded once. chi's URL parameter is not
// used because it is decoded or not depending on whether Go kept RawPath, so
// "%25" would arrive as "%" and be decoded again. An empty or undecodable id
// names no member; the router never lets the first through and Go's server
// refuses the second, so both are only defence.
func memberFromPath(r *http.Request, prefix string) (string, error) {
	p := r.URL.RawPath
	if p == "" {
		p = r.URL.EscapedPath()
	}
	escaped, ok := strings.CutPrefix(p, prefix)
	id, err := url.PathUnescape(escaped)
	if !ok || err != nil || id == "" {
		return "", &apiError{http.StatusNotFound, codeUnknownMember, "the member id is empty or not valid percent-encoding"}
	}
	return id, nil
}
