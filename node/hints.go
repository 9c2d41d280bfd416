package node

import (
	"time"

	"errors"
	"fmt"
	"log/slog"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// hintStore adapts the store's hint buckets to the versioned hints the
// coordinator and the handoff loop work with.
type hintStore struct {
	db      *store.DB
	metrics *replication.Metrics
	logger  *slog.Logger
	// grace is --tombstone-grace and now the node's clock: a hint of a
	// value older than the grace is dropped rather than delivered or read
	// (see expired).
	grace time.Duration
	now   func() time.Time
}

var _ replication.HintStore = hintStore{}

func (h hintStore) AddHint(target string, partition int, key []byte, obj *version.Object) error {
	changed := false
	dropped, err := h.db.UpdateHint(target, uint32(partition), key, func(old []byte) ([]byte, error) {
		cur, err := decodeObject(old, partition)
		if err != nil {
			return nil, err
		}
		next := version.Merge(cur, obj)
		if changed = old == nil || !next.Equal(cur); !changed {
			return nil, store.ErrNoChange
		}
		return next.Marshal(), nil
	})
	if err != nil && !errors.Is(err, store.ErrNoChange) {
		return err
	}
	if changed {
		h.metrics.HintStored()
	}
	if len(dropped) > 0 {
		h.metrics.HintsDropped(len(dropped))
		h.logger.Warn("hint storage full: dropped the oldest hints; anti-entropy will repair their targets",
			"dropped", len(dropped), "oldest_target", dropped[0].Target)
	}
	return nil
}

func (h hintStore) Hinted(partition int, key []byte) (*version.Object, error) {
	targets, err := h.db.HintTargets()
	if err != nil {
		return nil, err
	}
	var merged *version.Object
	for _, target := range targets {
		raw, err := h.db.GetHint(target, uint32(partition), key)
		if err != nil {
			return nil, err
		}
		obj, err := decodeObject(raw, partition)
		if err != nil {
			return nil, err
		}
		if h.expired(obj) {
			continue
		}
		merged = version.Merge(merged, obj)
	}
	return merged, nil
}

// expired reports whether a hint carries only values written longer ago
// than the tombstone grace. A delete of such a value may have been purged
// everywhere by now (replicas purge a tombstone once they all had it for
// the grace, and a stand-in is no replica), so delivering or reading the
// hint could bring the deleted value back; as Cassandra bounds its hint
// window by gc_grace, it is dropped instead. The replicas that acknowledged
// the write with it hold the value, and anti-entropy spreads it. Hints of
// deletes (tombstones) never resurrect anything and are kept.
func (h hintStore) expired(obj *version.Object) bool {
	if h.grace <= 0 || !obj.Live() {
		return false
	}
	return obj.Modified().Add(h.grace).Before(h.now())
}

func (h hintStore) Targets() ([]string, error) { return h.db.HintTargets() }

func (h hintStore) Hints(target string, cursor []byte, limit int) ([]replication.Hint, []byte, error) {
	raw, next, err := h.db.Hints(target, cursor, limit)
	if err != nil {
		return nil, nil, err
	}
	out := make([]replication.Hint, 0, len(raw))
	for _, r := range raw {
		obj, err := decodeObject(r.Value, int(r.Partition))
		if err != nil {
			return nil, nil, err
		}
		if h.expired(obj) {
			if _, err := h.db.DeleteHint(r.Target, r.Partition, r.Key, r.Seq); err != nil {
				return nil, nil, err
			}
			h.metrics.HintsDropped(1)
			h.logger.Warn("dropped a hint older than the tombstone grace", "target", r.Target, "partition", r.Partition,
				"written", obj.Modified(), "grace", h.grace)
			continue
		}
		out = append(out, replication.Hint{Target: r.Target, Partition: int(r.Partition), Key: r.Key, Object: obj, Seq: r.Seq})
	}
	return out, next, nil
}

func (h hintStore) Delivered(hint replication.Hint) error {
	_, err := h.db.DeleteHint(hint.Target, uint32(hint.Partition), hint.Key, hint.Seq)
	return err
}

// decodeObject decodes a stored object; nil bytes are no object.
func decodeObject(raw []byte, partition int) (*version.Object, error) {
	if raw == nil {
		return nil, nil
	}
	obj, err := decodeRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("stored object of partition %d is corrupt: %w", partition, err)
	}
	return obj, nil
}
