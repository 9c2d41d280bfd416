package merkle

import (
	"encoding/binary"
	"iter"
	"slices"
	"strconv"
	"testing"
)

// entryBytes is what the tests assume one key costs to send when a side
// lists a bucket, and what it occupies in the partition: about 100 bytes.
const entryBytes = 100

func key(i int) []byte { return strconv.AppendInt([]byte("key-"), int64(i), 10) }

// digest returns a distinct, well-spread digest for version v of key i,
// cheaply: the tests need millions of them.
func digest(i, v int) Digest {
	var d Digest
	x := uint64(i)<<20 | uint64(v)
	for w := 0; w < len(d); w += 8 {
		x = fmix64(x + 0x9e3779b97f4a7c15)
		binary.LittleEndian.PutUint64(d[w:], x)
	}
	return d
}

// partition yields keys 0..n-1 at version 0, reusing one key buffer as a
// storage cursor would.
func partition(n int) iter.Seq2[[]byte, Digest] {
	return func(yield func([]byte, Digest) bool) {
		var buf []byte
		for i := range n {
			buf = strconv.AppendInt(append(buf[:0], "key-"...), int64(i), 10)
			if !yield(buf, digest(i, 0)) {
				return
			}
		}
	}
}

func loaded(t testing.TB, leafBits, n int) *Tree {
	t.Helper()
	tr := New(leafBits)
	if got := tr.Load(partition(n)); got != n {
		t.Fatalf("Load added %d keys, want %d", got, n)
	}
	checkTree(t, tr)
	return tr
}

// checkTree verifies the tree's invariant: every interior node is the XOR of
// its children.
func checkTree(t testing.TB, tr *Tree) {
	t.Helper()
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	if len(tr.nodes) != 2<<tr.leafBits {
		t.Fatalf("%d nodes for %d leaf bits", len(tr.nodes), tr.leafBits)
	}
	for i := 1; i < 1<<tr.leafBits; i++ {
		if tr.nodes[i] != tr.nodes[2*i]^tr.nodes[2*i+1] {
			t.Fatalf("node %d = %x, children XOR to %x", i, tr.nodes[i], tr.nodes[2*i]^tr.nodes[2*i+1])
		}
	}
}

// sameTree fails unless two trees of one shape hold equal nodes.
func sameTree(t testing.TB, got, want *Tree) {
	t.Helper()
	g, w := got.Level(got.LeafBits()), want.Level(want.LeafBits())
	if !slices.Equal(g, w) || got.Root() != want.Root() {
		t.Fatalf("trees differ: roots %x, %x", got.Root(), want.Root())
	}
	checkTree(t, got)
}

// exchange runs an exchange that a opens and b answers, every message going
// through Marshal and Unmarshal as on the wire. It returns the outcome and
// the encoded messages in order.
func exchange(t testing.TB, a, b *Tree) (Diff, [][]byte) {
	t.Helper()
	sides := [2]*Tree{a, b}
	m := a.Start()
	var wire [][]byte
	for turn := 1; ; turn ^= 1 {
		data := m.Marshal()
		wire = append(wire, data)
		got, err := Unmarshal(data)
		if err != nil {
			t.Fatalf("message %d does not decode: %v", len(wire), err)
		}
		if got.Done {
			return got.Diff(), wire
		}
		if m, err = sides[turn].Reply(got); err != nil {
			t.Fatalf("reply to message %d: %v", len(wire), err)
		}
		if len(wire) > 8 {
			t.Fatal("exchange does not end")
		}
	}
}

func wireBytes(wire [][]byte) int {
	n := 0
	for _, m := range wire {
		n += len(m)
	}
	return n
}

// bucketsOf returns the sorted distinct buckets at depth of some keys.
func bucketsOf(depth int, keys ...[]byte) []uint32 {
	var out []uint32
	for _, k := range keys {
		out = append(out, bucket(keyHash(k), depth))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
