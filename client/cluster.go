package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// ClusterInfo is a node's view of the cluster (GET /cluster).
type ClusterInfo struct {
	// ID is the answering node's id.
	ID string `json:"id"`
	// N, R and W are the effective replicas per key and quorums.
	N int `json:"n"`
	R int `json:"r"`
	W int `json:"w"`
	// Partitions is the ring's partition count.
	Partitions int      `json:"partitions"`
	Members    []Member `json:"members"`
}

// Member is one node of the cluster.
type Member struct {
	ID string `json:"id"`
	// Addr is the client REST address, host:port.
	Addr       string `json:"addr"`
	PeerAddr   string `json:"peer_addr"`
	GossipAddr string `json:"gossip_addr"`
	// State is alive, suspect, dead or left.
	State string `json:"state"`
	// Leaving is set while the member hands off its data before it goes.
	Leaving bool `json:"leaving"`
	// Partitions is how many partitions it owns; PartitionsInTransfer how
	// many of those it is still receiving.
	Partitions           int `json:"partitions"`
	PartitionsInTransfer int `json:"partitions_in_transfer"`
	// HintsPending is how many hints it holds for other nodes.
	HintsPending int `json:"hints_pending"`
}

// KeyInfo tells where a key lives (GET /cluster/keys/{key}).
type KeyInfo struct {
	Key       string `json:"key"`
	Partition int    `json:"partition"`
	// PreferenceList holds the ids of the key's N replicas, the
	// coordinator first.
	PreferenceList []string `json:"preference_list"`
}

// Cluster asks any node for its view of the cluster.
func (c *Client) Cluster(ctx context.Context) (*ClusterInfo, error) {
	var info ClusterInfo
	if err := c.getJSON(ctx, "", "/cluster", &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// KeyInfo asks a node where key lives: the partition and preference list
// that the client also works out for itself to route the key's requests.
func (c *Client) KeyInfo(ctx context.Context, key string) (*KeyInfo, error) {
	var info KeyInfo
	if err := c.getJSON(ctx, key, keyPath("/cluster/keys/", key), &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// getJSON GETs path from the nodes for key (any node for "") with retries,
// and decodes the 200 answer into v.
func (c *Client) getJSON(ctx context.Context, key, path string, v any) error {
	ans, err := c.do(ctx, key, request{method: http.MethodGet, path: path})
	if err != nil {
		return err
	}
	if ans.status != http.StatusOK {
		return errorFrom(ans.node, ans.status, ans.body)
	}
	if err := json.Unmarshal(ans.body, v); err != nil {
		return fmt.Errorf("client: decoding %s%s: %w", ans.node, path, err)
	}
	return nil
}
