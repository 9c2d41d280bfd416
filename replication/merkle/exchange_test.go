package merkle

import (
	"errors"
	"slices"
	"testing"
)

// diverge changes ten of b's n keys: four updated, three gone, three new.
// It returns the keys changed and the indexes of the gone ones.
func diverge(b *Tree, n int) (changed [][]byte, gone []int) {
	for _, i := range []int{3, n / 100, n / 4, n - 1} {
		b.Set(key(i), digest(i, 0), digest(i, 1))
		changed = append(changed, key(i))
	}
	gone = []int{7, n/2 + 1, n * 7 / 9}
	for _, i := range gone {
		b.Delete(key(i), digest(i, 0))
		changed = append(changed, key(i))
	}
	for i := n; i < n+3; i++ {
		b.Set(key(i), Digest{}, digest(i, 0))
		changed = append(changed, key(i))
	}
	return changed, gone
}

// listingBytes is what both sides send when each lists the keys it holds in
// the differing buckets, for a diverged by diverge from b.
func listingBytes(diff Diff, n int, gone []int) int {
	total := 0
	for i := range n + 3 {
		if !diff.Contains(key(i)) {
			continue
		}
		if i < n { // a holds it
			total += entryBytes
		}
		if !slices.Contains(gone, i) { // b holds it
			total += entryBytes
		}
	}
	return total
}

func TestExchangeFindsChangedLeaves(t *testing.T) {
	const n = 100_000
	bits := LeafBitsFor(n)
	a, b := loaded(t, bits, n), loaded(t, bits, n)
	changed, _ := diverge(b, n)

	for _, dir := range []struct {
		name           string
		opener, answer *Tree
	}{{"a opens", a, b}, {"b opens", b, a}} {
		t.Run(dir.name, func(t *testing.T) {
			diff, wire := exchange(t, dir.opener, dir.answer)
			if want := bucketsOf(bits, changed...); diff.Depth != bits || !slices.Equal(diff.Buckets, want) {
				t.Fatalf("diff = depth %d %v, want depth %d %v", diff.Depth, diff.Buckets, bits, want)
			}
			for _, k := range changed {
				if !diff.Contains(k) || !slices.Contains(diff.Buckets, uint32(a.Leaf(k))) {
					t.Fatalf("diff misses changed key %s", k)
				}
			}
			if len(wire) != 4 {
				t.Fatalf("exchange took %d messages, want 4", len(wire))
			}
		})
	}
}

func TestExchangeInSync(t *testing.T) {
	a, b := loaded(t, 14, 20_000), loaded(t, 14, 20_000)
	diff, wire := exchange(t, a, b)
	if len(diff.Buckets) != 0 || len(wire) != 2 {
		t.Fatalf("equal trees: diff %v after %d messages, want none after 2", diff.Buckets, len(wire))
	}
	if total := wireBytes(wire); total > 32 {
		t.Fatalf("equal trees exchanged %d bytes", total)
	}
}

// Trees of different shapes agree on every depth they share, so they compare
// at the shallower one, whichever side opens.
func TestExchangeAcrossShapes(t *testing.T) {
	const n = 100_000
	a, b := loaded(t, 14, n), loaded(t, 10, n)
	changed, _ := diverge(b, n)
	for _, pair := range [][2]*Tree{{a, b}, {b, a}} {
		diff, wire := exchange(t, pair[0], pair[1])
		if want := bucketsOf(10, changed...); diff.Depth != 10 || !slices.Equal(diff.Buckets, want) {
			t.Fatalf("diff = depth %d %v, want depth 10 %v", diff.Depth, diff.Buckets, want)
		}
		if len(wire) != 4 {
			t.Fatalf("exchange took %d messages, want 4", len(wire))
		}
	}
}

func TestEmptyReplicaDiffersEverywhere(t *testing.T) {
	a, b := loaded(t, 6, 1000), New(6)
	diff, _ := exchange(t, b, a)
	if len(diff.Buckets) != 64 {
		t.Fatalf("%d of 64 leaves differ from an empty tree", len(diff.Buckets))
	}
}

func TestExchangeCostUnderOnePercent(t *testing.T) {
	const n = 100_000
	bits := LeafBitsFor(n)
	a, b := loaded(t, bits, n), loaded(t, bits, n)
	_, gone := diverge(b, n)
	diff, wire := exchange(t, a, b)
	hashBytes, listBytes := wireBytes(wire), listingBytes(diff, n, gone)
	data, total := n*entryBytes, hashBytes+listBytes
	t.Logf("%d keys, %d leaves, 10 differences: %d buckets, %d bytes of hashes + %d bytes of listings = %.3f%% of %d",
		n, 1<<bits, len(diff.Buckets), hashBytes, listBytes, 100*float64(total)/float64(data), data)
	if total*100 >= data {
		t.Fatalf("exchange sends %d bytes, not under 1%% of %d", total, data)
	}
}

func TestReplyRejects(t *testing.T) {
	tr := loaded(t, 8, 100)
	for name, m := range map[string]Message{
		"done":          {LeafBits: 8, Done: true},
		"deeper":        {LeafBits: 12, Depth: 9, Nodes: []uint32{1}, Hashes: []Hash{1}},
		"no nodes":      {LeafBits: 8},
		"missing hash":  {LeafBits: 8, Depth: 1, Nodes: []uint32{0, 1}, Hashes: []Hash{1}},
		"unsorted":      {LeafBits: 8, Depth: 1, Nodes: []uint32{1, 0}, Hashes: []Hash{1, 2}},
		"out of range":  {LeafBits: 8, Depth: 1, Nodes: []uint32{2}, Hashes: []Hash{1}},
		"bad shape":     {LeafBits: MaxLeafBits + 1, Nodes: []uint32{0}, Hashes: []Hash{1}},
		"depth > shape": {LeafBits: 2, Depth: 3, Nodes: []uint32{0}, Hashes: []Hash{1}},
	} {
		if got, err := tr.Reply(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Reply = %+v, %v; want ErrMalformed", name, got, err)
		}
	}
}
