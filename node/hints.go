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
	// value older than half the grace is dropped rather than delivered or
	// read (see stale). timeout is --request-timeout, how long a read that
	// sees a hint may take to repair replicas with it.
	grace   time.Duration
	timeout time.Duration
	now     func() time.Time
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
		// A coordinator may read-repair replicas with what it reads here
		// until its request's deadline.
		if h.stale(obj, h.now().Add(h.timeout)) {
			continue
		}
		merged = version.Merge(merged, obj)
	}
	return merged, nil
}

// stale reports whether a hint carries only values that will have been
// written more than half the tombstone grace ago by until, the time by
// which what is done with it now (a delivery, a read repair) has landed.
//
// A delete of such a value may be purged everywhere once the grace has
// passed (replicas purge a tombstone once they all had it for the grace,
// and a stand-in is no replica), so delivering or reading the hint later
// could bring the deleted value back. As Cassandra bounds its hint window
// by gc_grace, the hint is dropped instead: the replicas that acknowledged
// the write with it hold the value, and anti-entropy spreads it. Half the
// grace, not all of it, leaves the other half for clock skew between the
// nodes that stamped the write and the delete. Hints of deletes
// (tombstones) never resurrect anything and are kept.
func (h hintStore) stale(obj *version.Object, until time.Time) bool {
	if h.grace <= 0 || !obj.Live() {
		return false
	}
	return !obj.Modified().Add(h.grace / 2).After(until)
}

// Stale is stale for a hint about to be delivered (HandoffConfig.Stale).
func (h hintStore) Stale(hint replication.Hint, until time.Time) bool {
	return h.stale(hint.Object, until)
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
		if h.stale(obj, h.now()) {
			if _, err := h.db.DeleteHint(r.Target, r.Partition, r.Key, r.Seq); err != nil {
				return nil, nil, err
			}
			h.dropped(r.Target, r.Partition, obj)
			continue
		}
		out = append(out, replication.Hint{Target: r.Target, Partition: int(r.Partition), Key: r.Key, Object: obj, Seq: r.Seq})
	}
	return out, next, nil
}

// dropped counts and logs a stale hint dropped.
func (h hintStore) dropped(target string, partition uint32, obj *version.Object) {
	h.metrics.HintsDropped(1)
	h.logger.Warn("dropped a hint older than half the tombstone grace", "target", target, "partition", partition,
		"written", obj.Modified(), "grace", h.grace)
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
