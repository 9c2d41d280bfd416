package replication

import (
	"errors"
	"sync"

	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// Trees keeps one Merkle tree per partition over what this node stores, for
// anti-entropy: every committed write updates its partition's tree, and a
// tree is built from storage the first time it is needed (after a start,
// or when the node begins to replicate the partition). It is safe for
// concurrent use.
//
// Keeping a tree exact while writes go on takes one rule: a write holds
// Writing from before its commit until it has reported the change (Set), and
// a build takes its storage snapshot inside Build's exclusive section. So a
// write is either in the snapshot and reported to the old tree, or after
// the snapshot and reported to the new one; never both, never neither.
//
// A tree costs 16 bytes per leaf whatever the key count (see merkle): at
// most 1 MiB per partition, about 16 KiB for partitions of up to 8,000 keys.
type Trees struct {
	gate sync.RWMutex // held shared by writes, exclusively to begin a build

	mu    sync.Mutex // guards trees
	trees map[int]*merkle.Tree
}

// NewTrees returns an empty set of trees.
func NewTrees() *Trees { return &Trees{trees: map[int]*merkle.Tree{}} }

// Writing is held by a write from before it commits until it has called
// Set; the returned func releases it. A nil *Trees does nothing.
func (t *Trees) Writing() func() {
	if t == nil {
		return func() {}
	}
	t.gate.RLock()
	return t.gate.RUnlock
}

// Set reports a committed change of key from prev to next (nil: absent).
func (t *Trees) Set(partition int, key []byte, prev, next *version.Object) {
	if t == nil {
		return
	}
	tree := t.Get(partition)
	if tree == nil {
		return // not built yet: its build will read the key from storage
	}
	tree.Set(key, digest(prev), digest(next))
}

func digest(o *version.Object) merkle.Digest {
	if o == nil {
		return merkle.Digest{}
	}
	return o.Digest()
}

// Get returns partition's tree, nil when none was built.
func (t *Trees) Get(partition int) *merkle.Tree {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trees[partition]
}

// Drop forgets a partition's tree, when the node drops the partition.
func (t *Trees) Drop(partition int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.trees, partition)
}

// Snapshot reads a partition from one storage snapshot: it calls begun once
// the snapshot is taken and before the first key, then fn per key.
type Snapshot func(begun func(), fn func(key []byte, obj *version.Object) error) error

// Build makes partition's tree anew from storage, sized for about keys
// keys, and returns it.
func (t *Trees) Build(partition, keys int, scan Snapshot) (*merkle.Tree, error) {
	tree := merkle.New(merkle.LeafBitsFor(keys))
	t.gate.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			t.gate.Unlock()
		}
	}
	defer unlock()
	begun := func() {
		t.mu.Lock()
		t.trees[partition] = tree // writes from here on report to it
		t.mu.Unlock()
		unlock()
	}
	var err error
	tree.Load(func(yield func([]byte, merkle.Digest) bool) {
		err = scan(begun, func(key []byte, obj *version.Object) error {
			if !yield(key, digest(obj)) {
				return errStopScan
			}
			return nil
		})
	})
	if err != nil {
		t.Drop(partition) // incomplete: build again next time
		return nil, err
	}
	return tree, nil
}

var errStopScan = errors.New("replication: scan stopped")
