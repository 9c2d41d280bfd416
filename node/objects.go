package node

import (
	"errors"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// objectStore adapts the byte-level store to the versioned objects the
// coordinator and anti-entropy work with, and reports every committed
// change to anti-entropy's trees (ae nil: anti-entropy is off).
type objectStore struct {
	db *store.DB
	ae *replication.AntiEntropy
	// trees is ae's; writes hold trees.Writing from before they commit
	// until ae has seen the change.
	trees *replication.Trees
}

var (
	_ replication.Store        = (*objectStore)(nil)
	_ replication.ReplicaStore = (*objectStore)(nil)
)

func (s *objectStore) Get(partition int, key []byte) (*version.Object, error) {
	raw, err := s.db.Get(uint32(partition), key)
	if err != nil {
		return nil, err
	}
	return decodeObject(raw, partition)
}

func (s *objectStore) Apply(partition int, key []byte, fn func(*version.Object) (*version.Object, error)) (*version.Object, error) {
	defer s.trees.Writing()()
	var prev, out *version.Object
	_, err := s.db.Update(uint32(partition), key, func(old []byte) ([]byte, error) {
		cur, err := decodeObject(old, partition)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		prev, out = cur, next
		if next.Equal(cur) { // nothing new: skip the write and its fsync
			out = cur
			return nil, store.ErrNoChange
		}
		return encodeRecord(next), nil
	})
	if errors.Is(err, store.ErrNoChange) {
		return out, nil
	}
	if err == nil {
		s.ae.Written(partition, key, prev, out)
	}
	return out, err
}

// MergeAll merges each item's object into the stored copy of its key, all
// in one transaction and one fsync (how a page of a partition in transfer,
// or of a repair, is taken in), and returns how many keys changed.
func (s *objectStore) MergeAll(partition int, items []replication.RangeItem) (int, error) {
	defer s.trees.Writing()()
	keys := make([][]byte, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	type change struct {
		key        []byte
		prev, next *version.Object
	}
	var changes []change
	err := s.db.UpdateMany(uint32(partition), keys, func(i int, old []byte) ([]byte, error) {
		cur, err := decodeObject(old, partition)
		if err != nil {
			return nil, err
		}
		next := version.Merge(cur, items[i].Object)
		if next.Equal(cur) {
			return nil, store.ErrNoChange
		}
		changes = append(changes, change{keys[i], cur, next})
		return encodeRecord(next), nil
	})
	if err != nil {
		return 0, err
	}
	for _, c := range changes {
		s.ae.Written(partition, c.key, c.prev, c.next)
	}
	return len(changes), nil
}

// Purge deletes key for good if gone accepts its stored object.
func (s *objectStore) Purge(partition int, key []byte, gone func(*version.Object) bool) (bool, error) {
	defer s.trees.Writing()()
	var prev *version.Object
	_, err := s.db.Update(uint32(partition), key, func(old []byte) ([]byte, error) {
		cur, err := decodeObject(old, partition)
		if err != nil {
			return nil, err
		}
		if cur == nil || !gone(cur) {
			return nil, store.ErrNoChange
		}
		prev = cur
		return nil, nil // delete
	})
	if errors.Is(err, store.ErrNoChange) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	s.ae.Written(partition, key, prev, nil)
	return true, nil
}

// Count returns how many keys a partition holds.
func (s *objectStore) Count(partition int) (int, error) { return s.db.Count(uint32(partition)) }

// Scan reads a partition from one snapshot (see replication.ReplicaStore),
// decoding only the keys want accepts.
func (s *objectStore) Scan(partition int, want func([]byte) bool, begun func(), fn func([]byte, *version.Object) error) error {
	return s.db.ScanSnapshot(uint32(partition), nil, begun, func(key, raw []byte) error {
		if want != nil && !want(key) {
			return nil
		}
		obj, err := decodeObject(raw, partition)
		if err != nil {
			return err
		}
		return fn(key, obj)
	})
}

// Drop deletes a partition's data and its tree.
func (s *objectStore) Drop(partition int) error {
	defer s.trees.Writing()()
	if err := s.db.DropPartition(uint32(partition)); err != nil {
		return err
	}
	if s.trees != nil {
		s.trees.Drop(partition)
	}
	return nil
}
