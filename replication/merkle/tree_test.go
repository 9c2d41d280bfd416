package merkle

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
)

func TestLeafBitsFor(t *testing.T) {
	for _, c := range []struct{ keys, want int }{
		{0, 10}, {1, 10}, {1_000, 10}, {8 << 10, 10}, {8<<10 + 1, 11},
		{10_000, 11}, {100_000, 14}, {1_000_000, 16}, {1 << 40, 16},
	} {
		if got := LeafBitsFor(c.keys); got != c.want {
			t.Errorf("LeafBitsFor(%d) = %d, want %d", c.keys, got, c.want)
		}
	}
}

func TestNewRejectsBadShapes(t *testing.T) {
	for _, bits := range []int{-1, MaxLeafBits + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d) did not panic", bits)
				}
			}()
			New(bits)
		}()
	}
	tr := New(0)
	tr.Set(key(1), Digest{}, digest(1, 0))
	if tr.Leaf(key(1)) != 0 || tr.Root() == 0 || len(tr.Level(0)) != 1 {
		t.Fatalf("a one-leaf tree: leaf %d, root %x", tr.Leaf(key(1)), tr.Root())
	}
	checkTree(t, tr)
}

func TestEmptyTreeIsZero(t *testing.T) {
	tr := New(6)
	if tr.Root() != 0 || tr.Len() != 0 {
		t.Fatalf("empty tree: root %x, len %d", tr.Root(), tr.Len())
	}
	tr.Set(key(1), Digest{}, digest(1, 0))
	tr.Set(key(1), digest(1, 0), digest(1, 1))
	tr.Delete(key(1), digest(1, 1))
	tr.Set(key(2), Digest{}, Digest{})
	if tr.Root() != 0 || tr.Len() != 0 || slices.ContainsFunc(tr.Level(6), func(h Hash) bool { return h != 0 }) {
		t.Fatalf("after adding and removing a key: root %x, len %d", tr.Root(), tr.Len())
	}
}

// The tree is a function of the final (key, digest) set: it does not matter
// in which order transitions are reported, even those of one key, nor whether
// keys arrive through Set or Load.
func TestSetOrderIndependent(t *testing.T) {
	const n, bits = 3000, 8
	r := rand.New(rand.NewPCG(1, 2))
	type transition struct {
		key        int
		prev, next Digest
	}
	var history []transition
	final := make(map[int]Digest)
	for i := range n {
		var cur Digest
		for v := range 1 + r.IntN(3) {
			next := digest(i, v)
			history = append(history, transition{i, cur, next})
			cur = next
		}
		if r.IntN(5) == 0 { // gone entirely
			history = append(history, transition{i, cur, Digest{}})
			continue
		}
		final[i] = cur
	}

	want := New(bits)
	want.Load(func(yield func([]byte, Digest) bool) {
		for i, d := range final {
			if !yield(key(i), d) {
				return
			}
		}
	})
	if want.Len() != len(final) {
		t.Fatalf("Len = %d after loading %d keys", want.Len(), len(final))
	}
	for range 3 {
		r.Shuffle(len(history), func(i, j int) { history[i], history[j] = history[j], history[i] })
		got := New(bits)
		for _, tr := range history {
			got.Set(key(tr.key), tr.prev, tr.next)
		}
		sameTree(t, got, want)
		if got.Len() != len(final) {
			t.Fatalf("Len = %d, want %d", got.Len(), len(final))
		}
	}
}

func TestDeleteThenSetRestoresRoot(t *testing.T) {
	tr := loaded(t, 10, 5000)
	root, size := tr.Root(), tr.Len()
	k, d := key(77), digest(77, 0)

	tr.Delete(k, d)
	if tr.Root() == root || tr.Len() != size-1 {
		t.Fatalf("Delete left root %x (was %x), len %d", tr.Root(), root, tr.Len())
	}
	tr.Set(k, Digest{}, d)
	if tr.Root() != root || tr.Len() != size {
		t.Fatalf("Set back: root %x, want %x; len %d, want %d", tr.Root(), root, tr.Len(), size)
	}

	// A tombstone is an object: replacing a value by one changes the root.
	tomb := digest(77, 1)
	tr.Set(k, d, tomb)
	if tr.Root() == root || tr.Len() != size {
		t.Fatalf("tombstone: root %x unchanged or len %d", tr.Root(), tr.Len())
	}
	tr.Set(k, tomb, d)
	if tr.Root() != root {
		t.Fatal("restoring the value did not restore the root")
	}
	checkTree(t, tr)
}

func TestLeafMatchesStructure(t *testing.T) {
	tr := New(12)
	for i := range 200 {
		before := tr.Level(12)
		tr.Set(key(i), Digest{}, digest(i, 0))
		after := tr.Level(12)
		for leaf := range after {
			if changed := before[leaf] != after[leaf]; changed != (leaf == tr.Leaf(key(i))) {
				t.Fatalf("key %d in leaf %d, but leaf %d changed: %v", i, tr.Leaf(key(i)), leaf, changed)
			}
		}
	}
}

// Keys that differ only a little, as application keys do, spread over the
// leaves as randomly thrown balls would.
func TestLeavesBalanced(t *testing.T) {
	const n, bits = 100_000, 14
	counts := make([]int, 1<<bits)
	tr := New(bits)
	for i := range n {
		counts[tr.Leaf(key(i))]++
	}
	mean := float64(n) / float64(len(counts))
	empty := 0
	for _, c := range counts {
		if c == 0 {
			empty++
		}
	}
	// Poisson(6.1): about 37 empty leaves, a fullest leaf near 17.
	if most := slices.Max(counts); most > 25 || empty > 80 {
		t.Fatalf("mean %.1f keys per leaf, fullest %d, %d empty", mean, most, empty)
	}
}

// Set keeps nothing per key, so updating allocates nothing.
func TestSetDoesNotAllocate(t *testing.T) {
	tr := New(14)
	k, a, b := key(1), digest(1, 0), digest(1, 1)
	allocs := testing.AllocsPerRun(100, func() {
		tr.Set(k, Digest{}, a)
		tr.Set(k, a, b)
		tr.Delete(k, b)
	})
	if allocs != 0 {
		t.Fatalf("Set and Delete allocate %.0f times", allocs)
	}
}

// A tree's memory is fixed by its shape: 16 bytes per leaf whatever it holds.
func TestMemoryIndependentOfKeys(t *testing.T) {
	const bits = 14
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := New(bits)
	tr.Load(partition(100_000))
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(tr)
	if limit := int64(16<<bits) + 4<<10; grown > limit {
		t.Fatalf("a %d-leaf tree of 100k keys holds %d bytes, want at most %d", 1<<bits, grown, limit)
	}
}

// Writers report transitions while exchanges read the tree; the result is
// the same as reporting them one by one.
func TestConcurrentSetAndReply(t *testing.T) {
	const n, bits, writers = 4000, 10, 2
	tr := loaded(t, bits, n)
	want := loaded(t, bits, n)
	for i := range n {
		want.Set(key(i), digest(i, 0), digest(i, 1))
	}
	other := loaded(t, bits, n)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				tr.Set(key(i), digest(i, 0), digest(i, 1))
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			m := other.Start()
			for turn := 0; !m.Done; turn ^= 1 {
				var err error
				if m, err = [2]*Tree{tr, other}[turn].Reply(m); err != nil {
					t.Errorf("reply: %v", err)
					return
				}
			}
			_ = tr.Level(bits / 2)
		}
	})
	wg.Wait()
	sameTree(t, tr, want)
}

// Load may run while transitions committed after its snapshot arrive.
func TestLoadConcurrentWithSet(t *testing.T) {
	const n, extra, bits = 5000, 500, 9
	want := loaded(t, bits, n)
	for i := n; i < n+extra; i++ {
		want.Set(key(i), Digest{}, digest(i, 0))
	}
	tr := New(bits)
	var wg sync.WaitGroup
	wg.Go(func() { tr.Load(partition(n)) })
	wg.Go(func() {
		for i := n; i < n+extra; i++ {
			tr.Set(key(i), Digest{}, digest(i, 0))
		}
	})
	wg.Wait()
	sameTree(t, tr, want)
	if tr.Len() != n+extra {
		t.Fatalf("Len = %d, want %d", tr.Len(), n+extra)
	}
}
