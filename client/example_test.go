package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"

	"github.com/dynamo-kv/dynamo/client"
)

// A client of a three-node cluster writes a value and reads it back.
func Example() {
	// Three nodes in this process; in production, the addresses of yours
	// (any one is enough: the client finds the others).
	nodes := startLocalNodes(3, nil)
	defer nodes.Close()

	c, err := client.New(nodes.Addrs())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Put(ctx, "greeting", []byte("hello"), client.ContentType("text/plain")); err != nil {
		log.Fatal(err)
	}
	res, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (%s)\n", res.Value(), res.Siblings[0].ContentType)
	// Output: hello (text/plain)
}

// Two writes without a context are concurrent, so both are kept as
// siblings; GetResolve merges them with the caller's function and writes
// the merge back with the read's context, which replaces them.
func ExampleClient_GetResolve() {
	nodes := startLocalNodes(3, nil)
	defer nodes.Close()
	c, err := client.New(nodes.Addrs())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	for _, item := range []string{"milk", "eggs"} {
		if _, err := c.Put(ctx, "cart", []byte(item), client.ContentType("text/plain")); err != nil {
			log.Fatal(err)
		}
	}
	res, err := c.Get(ctx, "cart")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("siblings:", len(res.Siblings))

	union := func(siblings []client.Sibling) ([]byte, string, error) {
		var items []string
		for _, s := range siblings {
			items = append(items, strings.Split(string(s.Value), ",")...)
		}
		slices.Sort(items)
		return []byte(strings.Join(slices.Compact(items), ",")), "text/plain", nil
	}
	merged, err := c.GetResolve(ctx, "cart", union)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("merged:", string(merged.Value()))

	res, err = c.Get(ctx, "cart")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("read back:", string(res.Value()), "conflict:", res.Conflict())
	// Output:
	// siblings: 2
	// merged: eggs,milk
	// read back: eggs,milk conflict: false
}

// A write that carries the context of what the writer read supersedes it:
// read-modify-write leaves no sibling behind.
func ExampleClient_Put() {
	nodes := startLocalNodes(3, nil)
	defer nodes.Close()
	c, err := client.New(nodes.Addrs())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	token, err := c.Put(ctx, "visits", []byte("1"))
	if err != nil {
		log.Fatal(err)
	}
	// The token of the last write (or of a read) goes with the next write.
	if _, err := c.Put(ctx, "visits", []byte("2"), client.CausalContext(token), client.W(client.QuorumAll)); err != nil {
		log.Fatal(err)
	}
	res, err := c.Get(ctx, "visits", client.R(client.QuorumMajority))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(res.Value()), res.Conflict())
	// Output: 2 false
}

// A read of a deleted key reports ErrNotFound, with the deleted history's
// context: a write carrying it is known to come after the delete.
func ExampleClient_Delete() {
	nodes := startLocalNodes(3, nil)
	defer nodes.Close()
	c, err := client.New(nodes.Addrs())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Put(ctx, "session", []byte("abc")); err != nil {
		log.Fatal(err)
	}
	res, err := c.Get(ctx, "session")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Delete(ctx, "session", client.CausalContext(res.Context)); err != nil {
		log.Fatal(err)
	}
	res, err = c.Get(ctx, "session")
	fmt.Println(errors.Is(err, client.ErrNotFound), res.Context != "")
	// Output: true true
}

// Behind a load balancer, give its one address and turn routing off: the
// balancer picks the node, which forwards to a replica when it is not one.
func ExampleWithRouting() {
	nodes := startLocalNodes(3, nil)
	defer nodes.Close()
	balancer := nodes.Addrs()[0] // stands in for HAProxy's address
	c, err := client.New([]string{balancer}, client.WithRouting(false))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Put(context.Background(), "k", []byte("v")); err != nil {
		log.Fatal(err)
	}
	info, err := c.Cluster(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(info.Members), "members, N =", info.N)
	// Output: 3 members, N = 3
}
