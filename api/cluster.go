package api

import (
	"net/http"

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
