package node_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
	"github.com/dynamo-kv/dynamo/replication"
)

// Values for the cross-node compression tests: each node stores what it
// compresses well compressed (see compress.go), peers exchange plain
// encodings.

func jsonDoc(n int) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"user":"user-%d","email":"user-%d@example.com","plan":"pro","visits":%d},`, i, i, i, i*7%1000)
	}
	return append(bytes.TrimSuffix(b.Bytes(), []byte(",")), ']')
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCompressedValuesServedByEveryNode(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, nodetest.DefaultConfig())
	stored := map[string][]byte{
		"json-64KiB":      jsonDoc(64 << 10),
		"repetitive-1MiB": bytes.Repeat([]byte("dynamo! "), 1<<17),
		"random-16KiB":    randomBytes(16<<10, 1),
		"small":           []byte("tiny"),
		"empty":           {},
	}
	ids := c.IDs()
	i := 0
	for key, v := range stored {
		writer := c.Node(ids[i%len(ids)])
		i++
		if _, err := writer.Put(nodetest.Ctx(t), node.PutRequest{Key: []byte(key), Value: v, ContentType: "application/json"}); err != nil {
			t.Fatalf("put %s via %s: %v", key, writer.ID(), err)
		}
	}
	for key, v := range stored {
		// Through every node: the coordinator reads replicas' copies over
		// the network, as plain encodings.
		for _, id := range ids {
			obj := get(t, c.Node(id), key)
			if len(obj.Siblings) != 1 || !bytes.Equal(obj.Siblings[0].Value, v) || obj.Siblings[0].ContentType != "application/json" {
				t.Fatalf("get %s via %s: %d siblings, not the %d-byte value written", key, id, len(obj.Siblings), len(v))
			}
		}
		// And each replica's own stored copy, once the write reached all
		// three (W=2 acknowledges after two).
		nodetest.Eventually(t, converge, func() error {
			local := c.Local([]byte(key))
			if len(local) != 3 {
				return fmt.Errorf("%s: %d replicas", key, len(local))
			}
			for id, obj := range local {
				if !obj.Live() || !bytes.Equal(obj.Siblings[0].Value, v) {
					return fmt.Errorf("%s: %s's own copy is not the value written", key, id)
				}
			}
			return nil
		})
	}

	// Concurrent writes through two nodes, merged on every replica and
	// read through the third.
	a, b := jsonDoc(20<<10), append(jsonDoc(10<<10), randomBytes(10<<10, 2)...)
	put(t, c.Node(ids[0]), "both", string(a), nil, false)
	put(t, c.Node(ids[1]), "both", string(b), nil, false)
	obj := get(t, c.Node(ids[2]), "both")
	if got := values(obj); !slices.Equal(got, sorted(string(a), string(b))) {
		t.Fatalf("siblings via %s are not the two values written", ids[2])
	}
	nodetest.Eventually(t, converge, func() error {
		for id, obj := range c.Local([]byte("both")) {
			if got := values(obj); !slices.Equal(got, sorted(string(a), string(b))) {
				return fmt.Errorf("%s holds %d siblings, not both values", id, len(got))
			}
		}
		return nil
	})
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// A wiped replica is refilled from compressed copies: anti-entropy reads
// them from the others' stores, sends them plain, and the replica stores
// them compressed again.
func TestWipedReplicaRefilledWithCompressedValues(t *testing.T) {
	c := nodetest.MakeCluster(t, 3, aeConfig())
	keys := keysN("doc", 40)
	doc := string(jsonDoc(16 << 10))
	for i, k := range keys {
		put(t, c.Node(c.IDs()[i%3]), k, doc, nil, false)
	}
	holdsEverywhere(t, c, keys, []string{doc})
	c.Wipe("node-2")
	holdsEverywhere(t, c, keys, []string{doc})
}

// A page of a partition is bounded by what crosses the network, the plain
// encodings, not by the compressed records on disk, which can be
// thousands of times smaller.
func TestRangePageCountsPlainBytes(t *testing.T) {
	c := nodetest.MakeCluster(t, 1, nodetest.DefaultConfig())
	n := c.Node(c.IDs()[0])
	value := bytes.Repeat([]byte("a"), 1<<20) // a record of a few dozen bytes
	partition := -1
	for i, stored := 0, 0; stored < 8; i++ {
		key := fmt.Sprintf("range-%d", i)
		p := n.KeyInfo([]byte(key)).Partition
		if partition < 0 {
			partition = p
		}
		if p != partition {
			continue
		}
		put(t, n, key, string(value), nil, false)
		stored++
	}
	const maxBytes = 2 << 20
	resp, err := n.HandleRange(nodetest.Ctx(t), "peer", replication.RangeRequest{
		Partition: partition, MaxBytes: maxBytes, RingVersion: 0})
	if err != nil {
		t.Fatal(err)
	}
	plain := 0
	for _, it := range resp.Items {
		plain += len(it.Key) + len(it.Object.Marshal())
	}
	// At most one item past the budget.
	if plain > maxBytes+len(value)+1<<10 {
		t.Fatalf("a page of %d items holds %d plain bytes, asked for %d", len(resp.Items), plain, maxBytes)
	}
}
