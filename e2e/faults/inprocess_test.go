package faults_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynamo-kv/dynamo/e2e/faults"
	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// inProcess is a faults.Cluster over a nodetest cluster: nodes in this
// process, on the in-memory network. Kill closes a node (its requests in
// flight finish first; kill -9 belongs to the container mode) and Pause
// hangs its network traffic.
type inProcess struct {
	c *nodetest.Cluster
}

var (
	_ faults.Cluster     = (*inProcess)(nil)
	_ faults.HintCounter = (*inProcess)(nil)
)

func (p *inProcess) Nodes() []string { return p.c.IDs() }

func (p *inProcess) Up() []string {
	var up []string
	for _, id := range p.c.Running() {
		if n, ok := p.c.Lookup(id); ok && n.Ready() {
			up = append(up, id)
		}
	}
	return up
}

func (p *inProcess) node(id string) (*node.Node, error) {
	n, ok := p.c.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s is down", faults.ErrUnavailable, id)
	}
	return n, nil
}

// classify marks the errors the contract answers with 503.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, node.ErrUnavailable), errors.Is(err, node.ErrNoReplicas),
		errors.Is(err, node.ErrNotReady), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", faults.ErrUnavailable, err)
	}
	return err
}

func (p *inProcess) Put(ctx context.Context, via, key string, value []byte, clock version.Clock, hasContext bool) (version.Clock, error) {
	n, err := p.node(via)
	if err != nil {
		return nil, err
	}
	got, err := n.Put(ctx, node.PutRequest{Key: []byte(key), Value: value, ContentType: "text/plain", Context: clock, HasContext: hasContext})
	return got, classify(err)
}

func (p *inProcess) Get(ctx context.Context, via, key string) (faults.Read, error) {
	n, err := p.node(via)
	if err != nil {
		return faults.Read{}, err
	}
	obj, err := n.Get(ctx, node.GetRequest{Key: []byte(key)})
	if err != nil {
		return faults.Read{}, classify(err)
	}
	return faults.ReadOf(obj), nil
}

func (p *inProcess) Delete(ctx context.Context, via, key string, clock version.Clock) (version.Clock, error) {
	n, err := p.node(via)
	if err != nil {
		return nil, err
	}
	got, err := n.Delete(ctx, node.DeleteRequest{Key: []byte(key), Context: clock, HasContext: true})
	return got, classify(err)
}

func (p *inProcess) Replicas(key string) ([]string, error) {
	for _, id := range p.c.Running() {
		if n, ok := p.c.Lookup(id); ok {
			if list := n.KeyInfo([]byte(key)).PreferenceList; len(list) > 0 {
				return list, nil
			}
		}
	}
	return nil, errors.New("no running node has a ring")
}

func (p *inProcess) Local(id, key string) (faults.Read, error) {
	n, err := p.node(id)
	if err != nil {
		return faults.Read{}, err
	}
	obj, err := n.GetLocal([]byte(key))
	if err != nil {
		return faults.Read{}, err
	}
	return faults.ReadOf(obj), nil
}

func (p *inProcess) PendingHints() (int, error) {
	total := 0
	for _, id := range p.c.Running() {
		n, ok := p.c.Lookup(id)
		if !ok {
			continue
		}
		counts, err := n.PendingHints()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", id, err)
		}
		for _, c := range counts {
			total += c
		}
	}
	return total, nil
}

func (p *inProcess) Kill(id string) error    { p.c.Kill(id); return nil }
func (p *inProcess) Restart(id string) error { p.c.Restart(id); return nil }
func (p *inProcess) Pause(id string) error   { p.c.Net.Pause(id); return nil }
func (p *inProcess) Resume(id string) error  { p.c.Net.Resume(id); return nil }

func (p *inProcess) Partition(groups ...[]string) error { p.c.Partition(groups...); return nil }

// Reconnect ends the partition only: simnet's Heal would resume paused
// nodes too.
func (p *inProcess) Reconnect() error { p.c.Net.Partition(); return nil }
