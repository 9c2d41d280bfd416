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

func (h hintStore) AddHint(target string, partition int, key []byte, obj *version.Object, sole bool) error {
	changed := false
	dropped, err := h.db.UpdateHint(target, uint32(partition), key, func(old []byte) ([]byte, error) {
		cur, wasSole, err := decodeHint(old, partition)
		if err != nil {
			return nil, err
		}
		next := version.Merge(cur, obj)
		if changed = old == nil || !next.Equal(cur) || sole && !wasSole; !changed {
			return nil, store.ErrNoChange
		}
		return encodeHint(next, sole || wasSole), nil
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
		obj, sole, err := decodeHint(raw, partition)
		if err != nil {
			return nil, err
		}
		// A coordinator may read-repair replicas with what it reads here
		// until its request's deadline.
		if !sole && h.stale(obj, h.now().Add(h.timeout)) {
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

// Stale is stale for a hint about to be delivered (HandoffConfig.Stale):
// never for a sole hint, which may be its value's only copy. Losing an
// acknowledged write is certain harm, bringing a deleted value back only
// possible: it needs a client to have read the value from the stand-ins,
// deleted it, and the stand-ins to stay away from every replica for the
// whole grace after the delete.
func (h hintStore) Stale(hint replication.Hint, until time.Time) bool {
	return !hint.Sole && h.stale(hint.Object, until)
}

func (h hintStore) Targets() ([]string, error) { return h.db.HintTargets() }

func (h hintStore) Hints(target string, cursor []byte, limit int) ([]replication.Hint, []byte, error) {
	raw, next, err := h.db.Hints(target, cursor, limit)
	if err != nil {
		return nil, nil, err
	}
	out := make([]replication.Hint, 0, len(raw))
	for _, r := range raw {
		obj, sole, err := decodeHint(r.Value, int(r.Partition))
		if err != nil {
			return nil, nil, err
		}
		if !sole && h.stale(obj, h.now()) {
			if _, err := h.db.DeleteHint(r.Target, r.Partition, r.Key, r.Seq); err != nil {
				return nil, nil, err
			}
			h.dropped(r.Target, r.Partition, obj)
			continue
		}
		out = append(out, replication.Hint{Target: r.Target, Partition: int(r.Partition), Key: r.Key, Object: obj, Sole: sole, Seq: r.Seq})
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

// hintSole prefixes the stored object of a sole hint (replication.Hint.Sole).
// A stored object starts with its format byte (version's 1 or 2, or
// recordS2), never this.
const hintSole byte = 0x53

// encodeHint is a hint's stored bytes: the object as the store keeps
// objects, after hintSole for a sole hint.
func encodeHint(obj *version.Object, sole bool) []byte {
	if !sole {
		return obj.Marshal()
	}
	return append([]byte{hintSole}, obj.Marshal()...)
}

// decodeHint decodes what encodeHint wrote; nil bytes are no hint.
func decodeHint(raw []byte, partition int) (obj *version.Object, sole bool, err error) {
	if len(raw) > 0 && raw[0] == hintSole {
		raw, sole = raw[1:], true
		if len(raw) == 0 {
			return nil, false, fmt.Errorf("partition %d: a sole hint with no object", partition)
		}
	}
	obj, err = decodeObject(raw, partition)
	return obj, sole, err
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
