package merkle

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math/bits"
	"sync"
	"sync/atomic"
)

// MaxLeafBits bounds a tree's shape: 2^20 leaves take 32 MiB, far past any
// useful partition size, and decoded messages never list more nodes.
const MaxLeafBits = 20

// Recommended shapes, see LeafBitsFor.
const (
	minRecommendedBits = 10
	maxRecommendedBits = 16
	keysPerLeaf        = 8
)

// Digest identifies the state of a key's stored object, as
// version.Object.Digest returns it: equal objects, equal digests. The zero
// Digest stands for "no object" (SHA-256 never yields it in practice).
type Digest [32]byte

// Hash is the value of a tree node: the XOR of the entries of every key
// below it, zero for a node with no keys.
type Hash uint64

// Tree is the hash tree of one partition on one replica. It is safe for
// concurrent use.
type Tree struct {
	leafBits int
	keys     atomic.Int64 // what Len reports: +1 per key added, -1 per key gone

	// mu guards nodes. Writers hold it for one root-to-leaf path (Set,
	// Delete) or one pass over the tree (Load); readers for one copy of a
	// level or one Reply, so a Reply compares against a single state.
	mu sync.RWMutex
	// nodes is the tree in heap order: the root at 1, the children of node
	// i at 2i and 2i+1. Depth d is nodes[1<<d : 2<<d], the leaves are the
	// last half, and nodes[0] is unused.
	nodes []Hash
}

// New returns an empty tree with 2^leafBits leaves. It panics if leafBits is
// outside [0, MaxLeafBits], like make with a negative length: shapes come
// from LeafBitsFor or from validated configuration.
func New(leafBits int) *Tree {
	if leafBits < 0 || leafBits > MaxLeafBits {
		panic(fmt.Sprintf("merkle: leaf bits %d outside [0, %d]", leafBits, MaxLeafBits))
	}
	return &Tree{leafBits: leafBits, nodes: make([]Hash, 2<<leafBits)}
}

// LeafBitsFor returns the recommended shape for a partition expected to hold
// about keys keys: about 8 keys per leaf, but never fewer than 2^10 leaves
// (16 KiB), so a partition that starts small still resolves differences
// finely as it grows, and never more than 2^16 (1 MiB), past which the
// exchange already costs well under 0.1% of the partition.
func LeafBitsFor(keys int) int {
	if keys <= keysPerLeaf {
		return minRecommendedBits
	}
	b := bits.Len64(uint64(keys-1) / keysPerLeaf) // ceil(log2(keys/8))
	return min(max(b, minRecommendedBits), maxRecommendedBits)
}

// LeafBits returns the tree's shape: it has 2^LeafBits leaves.
func (t *Tree) LeafBits() int { return t.leafBits }

// Len returns the number of keys the tree covers, as counted from the
// transitions reported to it.
func (t *Tree) Len() int { return int(t.keys.Load()) }

// Leaf returns the leaf holding key, in [0, 2^LeafBits). A caller listing the
// keys of some leaves filters its partition scan with it; to filter by the
// outcome of an exchange use Diff.Contains, which also covers trees of other
// shapes.
func (t *Tree) Leaf(key []byte) int { return int(bucket(keyHash(key), t.leafBits)) }

// Set records that the object stored under key changed from one with digest
// prev to one with digest digest; the zero Digest means no object, so
// Set(key, Digest{}, d) adds a key. Tombstones are objects and have digests.
//
// The tree keeps nothing per key, so it cannot look up what a key held: the
// caller must report every transition it commits exactly once, with the
// digest it really replaced. Reports may arrive in any order: the update is
// an XOR, so concurrent writers need not be serialised.
func (t *Tree) Set(key []byte, prev, digest Digest) {
	if prev == digest {
		return
	}
	switch {
	case prev == Digest{}:
		t.keys.Add(1)
	case digest == Digest{}:
		t.keys.Add(-1)
	}
	kh := keyHash(key)
	delta := entry(kh, prev) ^ entry(kh, digest)
	n := 1<<t.leafBits + int(bucket(kh, t.leafBits))
	t.mu.Lock()
	for ; n > 0; n >>= 1 {
		t.nodes[n] ^= delta
	}
	t.mu.Unlock()
}

// Delete records that key, whose object had digest prev, is gone entirely
// (a tombstone purged, the key handed off). It is Set(key, prev, Digest{}).
func (t *Tree) Delete(key []byte, prev Digest) { t.Set(key, prev, Digest{}) }

// Load adds every (key, digest) keys yields, as Set(key, Digest{}, digest)
// would, and returns how many it added; zero digests are skipped. It is the
// start-up path: the caller scans one consistent snapshot of the partition
// into a new tree, and reports to the tree exactly the transitions committed
// after that snapshot (those may arrive while Load runs). Load keeps nothing
// yielded, so the sequence may reuse its buffers. It folds keys into a
// private array and holds the lock only to merge it in.
func (t *Tree) Load(keys iter.Seq2[[]byte, Digest]) int {
	leaves := make([]Hash, 1<<t.leafBits)
	n := 0
	for key, digest := range keys {
		if digest == (Digest{}) {
			continue
		}
		kh := keyHash(key)
		leaves[bucket(kh, t.leafBits)] ^= entry(kh, digest)
		n++
	}
	t.keys.Add(int64(n))
	t.mu.Lock()
	defer t.mu.Unlock()
	own := t.nodes[len(leaves):]
	for i, h := range leaves {
		own[i] ^= h
	}
	// Every parent is the XOR of its children, so recomputing the interior
	// from the merged leaves also keeps what concurrent Sets added to it.
	for i := len(leaves) - 1; i > 0; i-- {
		t.nodes[i] = t.nodes[2*i] ^ t.nodes[2*i+1]
	}
	return n
}

// Root returns the root hash: equal roots mean, but for a 2^-64 chance, equal
// partitions.
func (t *Tree) Root() Hash {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.nodes[1]
}

// Level returns a copy of the 2^depth hashes at depth, 0 being the root and
// LeafBits the leaves. It panics if depth is outside [0, LeafBits].
func (t *Tree) Level(depth int) []Hash {
	if depth < 0 || depth > t.leafBits {
		panic(fmt.Sprintf("merkle: depth %d outside [0, %d]", depth, t.leafBits))
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return append([]Hash(nil), t.level(depth)...)
}

// level returns depth's slice of nodes; the caller holds mu.
func (t *Tree) level(depth int) []Hash { return t.nodes[1<<depth : 2<<depth] }

// keyHash is FNV-1a 64 of the key, finalised with MurmurHash3's fmix64 so
// that its top bits, which pick the leaf, depend on every byte. It is not
// the ring's hash: the keys of one partition share the top bits of that one.
func keyHash(key []byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for _, c := range key {
		h ^= uint64(c)
		h *= prime
	}
	return fmix64(h)
}

// bucket returns the node at depth covering a key hash: its top depth bits.
// Go defines a shift by 64 as zero, so depth 0 is the root.
func bucket(kh uint64, depth int) uint32 { return uint32(kh >> (64 - depth)) }

// entry is a key's contribution to its leaf: the key hash mixed with every
// word of the digest, through a bijection at each step, so that swapping
// digests between keys or changing any digest bit changes the XOR of a leaf
// but for a 2^-64 chance. An absent key contributes nothing.
func entry(kh uint64, d Digest) Hash {
	if d == (Digest{}) {
		return 0
	}
	h := kh
	for i := 0; i < len(d); i += 8 {
		h = fmix64(h ^ binary.LittleEndian.Uint64(d[i:]))
	}
	return Hash(h)
}

// fmix64 is MurmurHash3's 64-bit finaliser, a bijection with full avalanche.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
