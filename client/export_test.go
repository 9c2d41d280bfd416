package client

import (
	"context"
	"time"
)

// Placement returns the partition and replica ids the client routes key by,
// fetching the ring first if it has none; ok is false without a ring.
func Placement(ctx context.Context, c *Client, key string) (partition int, replicas []string, ok bool) {
	if c.router == nil {
		return 0, nil, false
	}
	c.router.targets(ctx, key)
	rt := c.router.current.Load()
	if rt == nil {
		return 0, nil, false
	}
	p := rt.placer.PartitionOf([]byte(key))
	return p, rt.lists[p], true
}

// RingVersion returns the version of the ring the client routes by, "" for none.
func RingVersion(c *Client) string {
	if rt := c.router.current.Load(); rt != nil {
		return rt.version
	}
	return ""
}

// WithClock replaces the client's clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}
