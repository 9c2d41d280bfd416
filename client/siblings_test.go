package client_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dynamo-kv/dynamo/client"
	"github.com/dynamo-kv/dynamo/node"
)

// A blind write to a key at --max-siblings fails with an error matching
// ErrTooManySiblings, an *Error with the 409 and its code; GetResolve
// clears the way for the next blind write.
func TestTooManySiblings(t *testing.T) {
	nodes := newCluster(t, 1, func(c *node.Config) { c.SiblingWarn, c.MaxSiblings = 1, 3 })
	c := newClient(t, nodes.Addrs())
	ctx := ctxFor(t)
	for i := range 3 {
		if _, err := c.Put(ctx, "k", fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	_, err := c.Put(ctx, "k", []byte("v3"))
	if !errors.Is(err, client.ErrTooManySiblings) {
		t.Fatalf("write past the limit: %v, want ErrTooManySiblings", err)
	}
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 409 || e.Code != "too_many_siblings" || e.Temporary() {
		t.Fatalf("write past the limit: %#v, want a 409 too_many_siblings *Error", err)
	}
	if errors.Is(&client.Error{Status: 409, Code: "member_alive"}, client.ErrTooManySiblings) {
		t.Fatal("another 409 matches ErrTooManySiblings")
	}

	res, err := c.GetResolve(ctx, "k", func(s []client.Sibling) ([]byte, string, error) {
		return []byte(fmt.Sprintf("%d merged", len(s))), "text/plain", nil
	})
	if err != nil || string(res.Value()) != "3 merged" {
		t.Fatalf("GetResolve: %v, %v", res, err)
	}
	if _, err := c.Put(ctx, "k", []byte("v3")); err != nil {
		t.Fatalf("blind write after resolving: %v", err)
	}
}
