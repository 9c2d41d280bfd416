package merkle

import (
	"fmt"
	"slices"
)

// Message is one step of an exchange: the sender's hashes of some nodes at
// one depth, or, when Done, the outcome. Start and Reply make them; Marshal
// and Unmarshal carry them.
type Message struct {
	// LeafBits is the sender's shape. Neither side descends below the
	// shallower of the two trees.
	LeafBits int
	// Depth is the depth of Nodes: 0 for the root, at most LeafBits.
	Depth int
	// Nodes are indexes of nodes at Depth, strictly ascending, each below
	// 2^Depth. When Done they are the buckets where the trees differ.
	Nodes []uint32
	// Hashes are the sender's hashes of Nodes, one each; empty when Done.
	Hashes []Hash
	// Done says the descent is over and Nodes are its outcome (none: the
	// trees are equal).
	Done bool
}

// Diff returns the outcome a Done message carries.
func (m Message) Diff() Diff { return Diff{Depth: m.Depth, Buckets: m.Nodes} }

// Diff is the outcome of an exchange: the buckets where two trees differ. A
// bucket at depth d holds the keys whose hash begins with its d-bit index,
// which in a tree of d leaf bits is a leaf and in a deeper one a subtree.
type Diff struct {
	Depth   int
	Buckets []uint32 // ascending
}

// Contains reports whether key lies in one of the differing buckets: the
// keys each side must list from storage to find the ones that differ.
func (d Diff) Contains(key []byte) bool {
	_, found := slices.BinarySearch(d.Buckets, bucket(keyHash(key), d.Depth))
	return found
}

// Start returns the message that opens an exchange: the root hash alone, so
// that replicas in sync settle it in one comparison.
func (t *Tree) Start() Message {
	return Message{LeafBits: t.leafBits, Nodes: []uint32{0}, Hashes: []Hash{t.Root()}}
}

// Reply answers a message of an exchange by comparing its hashes with this
// tree's. When no node differs, or the nodes are at the shallower of the two
// trees' leaf depths, it returns the outcome (Done). Otherwise it returns this
// tree's hashes of every node below the differing ones, one descent deeper.
//
// Each side replies to the other's message until one of them produces or
// receives a Done message, so each message is a comparison and nobody keeps
// state between them. With L the shallower leaf depth, the first descent
// goes ceil(L/2) levels and the second the rest, so an exchange of differing
// trees takes four messages: the root, 2^ceil(L/2) hashes, 2^floor(L/2)
// hashes per differing node, and the outcome.
//
// Messages that are malformed, Done, or deeper than this tree are rejected
// with ErrMalformed.
func (t *Tree) Reply(m Message) (Message, error) {
	if err := m.validate(); err != nil {
		return Message{}, err
	}
	if m.Done {
		return Message{}, fmt.Errorf("%w: the exchange is over", ErrMalformed)
	}
	limit := min(t.leafBits, m.LeafBits)
	if m.Depth > limit {
		return Message{}, fmt.Errorf("%w: depth %d below this tree's %d leaf bits", ErrMalformed, m.Depth, t.leafBits)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	level := t.level(m.Depth)
	var differ []uint32
	for i, n := range m.Nodes {
		if level[n] != m.Hashes[i] {
			differ = append(differ, n)
		}
	}
	if len(differ) == 0 || m.Depth == limit {
		return Message{LeafBits: t.leafBits, Depth: m.Depth, Nodes: differ, Done: true}, nil
	}
	depth := min(limit, m.Depth+(limit+1)/2)
	shift := depth - m.Depth
	below := t.level(depth)
	out := Message{
		LeafBits: t.leafBits,
		Depth:    depth,
		Nodes:    make([]uint32, 0, len(differ)<<shift),
		Hashes:   make([]Hash, 0, len(differ)<<shift),
	}
	for _, n := range differ {
		first, end := n<<shift, (n+1)<<shift
		for c := first; c < end; c++ {
			out.Nodes = append(out.Nodes, c)
		}
		out.Hashes = append(out.Hashes, below[first:end]...)
	}
	return out, nil
}

// validate checks what every message must satisfy, whoever built it.
func (m Message) validate() error {
	switch {
	case m.LeafBits < 0 || m.LeafBits > MaxLeafBits:
		return fmt.Errorf("%w: leaf bits %d outside [0, %d]", ErrMalformed, m.LeafBits, MaxLeafBits)
	case m.Depth < 0 || m.Depth > m.LeafBits:
		return fmt.Errorf("%w: depth %d outside [0, %d]", ErrMalformed, m.Depth, m.LeafBits)
	case m.Done && len(m.Hashes) != 0:
		return fmt.Errorf("%w: hashes in a final message", ErrMalformed)
	case !m.Done && (len(m.Nodes) == 0 || len(m.Hashes) != len(m.Nodes)):
		return fmt.Errorf("%w: %d nodes with %d hashes", ErrMalformed, len(m.Nodes), len(m.Hashes))
	}
	width := uint64(1) << m.Depth
	for i, n := range m.Nodes {
		if uint64(n) >= width || (i > 0 && n <= m.Nodes[i-1]) {
			return fmt.Errorf("%w: nodes out of range or not ascending", ErrMalformed)
		}
	}
	return nil
}
