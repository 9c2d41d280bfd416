package node

import (
	"errors"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// objectStore adapts the byte-level store to the versioned objects the
// coordinator works with.
type objectStore struct{ db *store.DB }

var _ replication.Store = objectStore{}

func (s objectStore) Get(partition int, key []byte) (*version.Object, error) {
	raw, err := s.db.Get(uint32(partition), key)
	if err != nil {
		return nil, err
	}
	return decodeObject(raw, partition)
}

func (s objectStore) Apply(partition int, key []byte, fn func(*version.Object) (*version.Object, error)) (*version.Object, error) {
	var out *version.Object
	_, err := s.db.Update(uint32(partition), key, func(old []byte) ([]byte, error) {
		cur, err := decodeObject(old, partition)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		if next.Equal(cur) { // nothing new: skip the write and its fsync
			out = cur
			return nil, store.ErrNoChange
		}
		out = next
		return next.Marshal(), nil
	})
	if errors.Is(err, store.ErrNoChange) {
		err = nil
	}
	return out, err
}

// MergeAll merges each item's object into the stored copy of its key, all
// in one transaction and one fsync: how a page of a partition in transfer
// is taken in.
func (s objectStore) MergeAll(partition int, items []replication.RangeItem) error {
	keys := make([][]byte, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return s.db.UpdateMany(uint32(partition), keys, func(i int, old []byte) ([]byte, error) {
		cur, err := decodeObject(old, partition)
		if err != nil {
			return nil, err
		}
		next := version.Merge(cur, items[i].Object)
		if next.Equal(cur) {
			return nil, store.ErrNoChange
		}
		return next.Marshal(), nil
	})
}
