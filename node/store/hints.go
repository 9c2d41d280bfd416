package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// MaxTargetSize is the longest hint target accepted, in bytes: its length is
// stored in one byte of the hint's hintseq entry.
const MaxTargetSize = 255

const defaultMaxHints = 1_000_000

// Hint is one stored write meant for another node, the target. Its slices
// are owned by the caller.
type Hint struct {
	Target    string
	Partition uint32
	Key       []byte
	Value     []byte // nil in the hints UpdateHint reports as dropped

	// Seq orders hints by when they were last written (larger is newer) and
	// identifies this version of the hint: DeleteHint takes it so that a
	// hint rewritten after it was read is not deleted.
	Seq uint64
}

// UpdateHint atomically replaces the hint for (target, partition, key) with
// fn(old), durably, under the same rules as Update: old is nil when there is
// no hint and valid only during fn; fn may run more than once; a nil result
// deletes the hint; ErrNoChange or another error from fn writes nothing, and
// then UpdateHint returns nil or that error without waiting for an fsync.
//
// A written hint gets a fresh Seq, making it the newest. If afterwards more
// than Options.MaxHints hints are stored, the oldest of them (lowest Seq, any
// target) are deleted in the same transaction and returned as dropped, with
// Target, Partition, Key and Seq set, for the caller to log and count.
func (db *DB) UpdateHint(target string, partition uint32, key []byte, fn func(old []byte) ([]byte, error)) (dropped []Hint, err error) {
	if err := checkHintAddress(target, key); err != nil {
		return nil, err
	}

	// As in Update: a snapshot pass first, so that declining to write costs
	// no fsync and no failing call inside someone else's batch.
	var (
		fnErr  error
		writes bool
	)
	err = db.view(func(tx *bolt.Tx) error {
		old, _, err := hintBucketsOf(tx).get(target, partition, key)
		if err != nil {
			return err
		}
		writes, _, fnErr = dryRun(old, fn)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: update hint for %q in partition %d: %w", target, partition, err)
	}
	if !writes {
		return nil, fnErr
	}

	// bbolt may rerun this closure, so it sets every result on each run.
	err = db.batch(func(tx *bolt.Tx) error {
		dropped, fnErr = nil, nil
		h := hintBucketsOf(tx)
		old, oldSeq, err := h.get(target, partition, key)
		if err != nil {
			return err
		}
		next, err := fn(old)
		switch {
		case errors.Is(err, ErrNoChange):
			return nil
		case err != nil:
			// Not returned to bbolt: that would roll back the whole batch.
			fnErr = err
			return nil
		case next == nil:
			if old == nil {
				return nil
			}
			err = h.remove(target, partition, key, oldSeq)
		default:
			err = h.put(target, partition, key, old != nil, oldSeq, next)
		}
		if err != nil {
			return err
		}
		dropped, err = h.dropOldest(db.maxHints)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: update hint for %q in partition %d: %w", target, partition, err)
	}
	return dropped, fnErr
}

// GetHint returns a copy of the hint's value, or nil when there is none.
func (db *DB) GetHint(target string, partition uint32, key []byte) ([]byte, error) {
	if err := checkHintAddress(target, key); err != nil {
		return nil, err
	}
	var val []byte
	err := db.view(func(tx *bolt.Tx) error {
		old, _, err := hintBucketsOf(tx).get(target, partition, key)
		val = bytes.Clone(old)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: get hint for %q in partition %d: %w", target, partition, err)
	}
	return val, nil
}

// HintTargets returns the targets that hold at least one hint, sorted.
func (db *DB) HintTargets() ([]string, error) {
	var targets []string
	err := db.view(func(tx *bolt.Tx) error {
		h := hintBucketsOf(tx)
		return h.hints.ForEachBucket(func(name []byte) error {
			if h.hints.Bucket(name).Sequence() > 0 {
				targets = append(targets, string(name))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: list hint targets: %w", err)
	}
	return targets, nil
}

// HintCounts returns how many hints each target holds, read from counters
// kept up to date by every write rather than by scanning. Targets without
// hints are absent.
func (db *DB) HintCounts() (map[string]int, error) {
	counts := make(map[string]int)
	err := db.view(func(tx *bolt.Tx) error {
		h := hintBucketsOf(tx)
		return h.hints.ForEachBucket(func(name []byte) error {
			if n := h.hints.Bucket(name).Sequence(); n > 0 {
				counts[string(name)] = int(n)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: count hints: %w", err)
	}
	return counts, nil
}

// Hints returns up to limit of target's hints in (partition, key) order,
// starting after the cursor after (nil for the first page), and the cursor
// for the next page, nil when no hints follow. A cursor stays valid across
// writes: the next page starts after the last hint returned, wherever that
// now falls.
func (db *DB) Hints(target string, after []byte, limit int) (hints []Hint, next []byte, err error) {
	if err := checkTarget(target); err != nil {
		return nil, nil, err
	}
	if limit <= 0 {
		return nil, nil, fmt.Errorf("store: list hints for %q: limit %d, want at least 1", target, limit)
	}
	if len(after) > 0 && len(after) < 5 {
		return nil, nil, fmt.Errorf("store: list hints for %q: malformed cursor %x", target, after)
	}
	err = db.view(func(tx *bolt.Tx) error {
		tb := hintBucketsOf(tx).hints.Bucket([]byte(target))
		if tb == nil {
			return nil
		}
		parts := tb.Cursor()
		pname, _ := parts.First()
		if len(after) > 0 {
			pname, _ = parts.Seek(after[:4])
		}
		for ; pname != nil; pname, _ = parts.Next() {
			keys := tb.Bucket(pname).Cursor()
			k, v := keys.First()
			if len(after) > 0 && bytes.Equal(pname, after[:4]) {
				if k, v = keys.Seek(after[4:]); bytes.Equal(k, after[4:]) {
					k, v = keys.Next()
				}
			}
			for ; k != nil; k, v = keys.Next() {
				if len(hints) == limit {
					last := hints[len(hints)-1]
					next = hintCursor(last.Partition, last.Key)
					return nil
				}
				seq, payload, err := splitHintValue(v)
				if err != nil {
					return fmt.Errorf("partition %d: %w", binary.BigEndian.Uint32(pname), err)
				}
				hints = append(hints, Hint{
					Target:    target,
					Partition: binary.BigEndian.Uint32(pname),
					Key:       bytes.Clone(k),
					Value:     bytes.Clone(payload),
					Seq:       seq,
				})
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: list hints for %q: %w", target, err)
	}
	return hints, next, nil
}

// DeleteHint deletes the hint, durably, only if its Seq is still seq, so a
// hint rewritten since it was read (and not yet delivered in its new form)
// stays. It reports whether it deleted.
func (db *DB) DeleteHint(target string, partition uint32, key []byte, seq uint64) (bool, error) {
	if err := checkHintAddress(target, key); err != nil {
		return false, err
	}
	// Seqs only grow and are never reused, so a hint that does not match
	// in a snapshot will not match later either: answer without a write.
	var matches bool
	err := db.view(func(tx *bolt.Tx) error {
		old, oldSeq, err := hintBucketsOf(tx).get(target, partition, key)
		matches = old != nil && oldSeq == seq
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: delete hint for %q in partition %d: %w", target, partition, err)
	}
	if !matches {
		return false, nil
	}

	var deleted bool
	err = db.batch(func(tx *bolt.Tx) error {
		deleted = false
		h := hintBucketsOf(tx)
		old, oldSeq, err := h.get(target, partition, key)
		if err != nil || old == nil || oldSeq != seq {
			return err
		}
		if err := h.remove(target, partition, key, oldSeq); err != nil {
			return err
		}
		deleted = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: delete hint for %q in partition %d: %w", target, partition, err)
	}
	return deleted, nil
}

// hintBuckets are the two top buckets that hold hints within one
// transaction. doc.go describes their layout; every change goes through put
// and remove, which keep hints, hintseq and the counters in step.
type hintBuckets struct {
	hints *bolt.Bucket // target -> partition -> key -> seq + value
	seqs  *bolt.Bucket // seq -> ref to the hint; its sequence is the last seq given out
}

func hintBucketsOf(tx *bolt.Tx) hintBuckets {
	return hintBuckets{hints: tx.Bucket(bucketHints), seqs: tx.Bucket(bucketHintSeq)}
}

// get returns the hint's value (pointing into the transaction) and seq, or
// nil when there is no hint; a corrupt record is an error.
func (h hintBuckets) get(target string, partition uint32, key []byte) ([]byte, uint64, error) {
	tb := h.hints.Bucket([]byte(target))
	if tb == nil {
		return nil, 0, nil
	}
	pb := tb.Bucket(partitionName(partition))
	if pb == nil {
		return nil, 0, nil
	}
	v := pb.Get(key)
	if v == nil {
		return nil, 0, nil
	}
	seq, payload, err := splitHintValue(v)
	return payload, seq, err
}

// put stores value as the newest hint for (target, partition, key). existed
// and oldSeq describe the hint it replaces.
func (h hintBuckets) put(target string, partition uint32, key []byte, existed bool, oldSeq uint64, value []byte) error {
	tb, err := h.hints.CreateBucketIfNotExists([]byte(target))
	if err != nil {
		return err
	}
	pb, err := tb.CreateBucketIfNotExists(partitionName(partition))
	if err != nil {
		return err
	}
	seq, err := h.seqs.NextSequence()
	if err != nil {
		return err
	}
	// A fresh slice: value may alias the old value in the memory map.
	stored := append(seqName(seq), value...)
	if err := pb.Put(key, stored); err != nil {
		return err
	}
	if err := h.seqs.Put(seqName(seq), hintRef(target, partition, key)); err != nil {
		return err
	}
	if existed {
		return h.seqs.Delete(seqName(oldSeq))
	}
	if err := tb.SetSequence(tb.Sequence() + 1); err != nil {
		return err
	}
	return h.hints.SetSequence(h.hints.Sequence() + 1)
}

// remove deletes the hint for (target, partition, key), whose seq is seq,
// and any bucket that leaves empty.
func (h hintBuckets) remove(target string, partition uint32, key []byte, seq uint64) error {
	tb := h.hints.Bucket([]byte(target))
	pname := partitionName(partition)
	pb := tb.Bucket(pname)
	if err := pb.Delete(key); err != nil {
		return err
	}
	if err := h.seqs.Delete(seqName(seq)); err != nil {
		return err
	}
	if err := h.hints.SetSequence(h.hints.Sequence() - 1); err != nil {
		return err
	}
	if n := tb.Sequence() - 1; n > 0 {
		if err := tb.SetSequence(n); err != nil {
			return err
		}
		if k, _ := pb.Cursor().First(); k != nil {
			return nil
		}
		return tb.DeleteBucket(pname)
	}
	return h.hints.DeleteBucket([]byte(target))
}

// dropOldest removes the oldest hints until at most limit remain and
// returns what it removed, without values.
func (h hintBuckets) dropOldest(limit int) ([]Hint, error) {
	var dropped []Hint
	for h.hints.Sequence() > uint64(limit) {
		k, v := h.seqs.Cursor().First()
		if k == nil {
			return nil, fmt.Errorf("hint counter says %d but hintseq is empty", h.hints.Sequence())
		}
		hint, err := parseHintRef(v)
		if err != nil {
			return nil, fmt.Errorf("hintseq %x: %w", k, err)
		}
		hint.Seq = binary.BigEndian.Uint64(k)
		if err := h.remove(hint.Target, hint.Partition, hint.Key, hint.Seq); err != nil {
			return nil, err
		}
		dropped = append(dropped, hint)
	}
	return dropped, nil
}

func seqName(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// splitHintValue splits a stored hint into its seq and the caller's value.
// The value is never nil, so an empty value stays distinct from absent. A
// record too short to hold its seq (a corrupt file) is an error, not a
// panic in whichever goroutine reads it.
func splitHintValue(v []byte) (seq uint64, value []byte, err error) {
	if len(v) < 8 {
		return 0, nil, fmt.Errorf("corrupt hint record of %d bytes, shorter than its seq", len(v))
	}
	return binary.BigEndian.Uint64(v), v[8:len(v):len(v)], nil
}

// hintRef encodes the address of a hint as hintseq stores it: target length
// (one byte), target, partition (4 bytes BE), key.
func hintRef(target string, partition uint32, key []byte) []byte {
	ref := make([]byte, 0, 1+len(target)+4+len(key))
	ref = append(ref, byte(len(target)))
	ref = append(ref, target...)
	ref = binary.BigEndian.AppendUint32(ref, partition)
	return append(ref, key...)
}

// parseHintRef decodes hintRef's encoding into a Hint with copied fields.
func parseHintRef(ref []byte) (Hint, error) {
	if len(ref) < 1 || len(ref) < 1+int(ref[0])+4+1 {
		return Hint{}, fmt.Errorf("malformed hint ref %x", ref)
	}
	n := int(ref[0])
	return Hint{
		Target:    string(ref[1 : 1+n]),
		Partition: binary.BigEndian.Uint32(ref[1+n:]),
		Key:       bytes.Clone(ref[1+n+4:]),
	}, nil
}

// hintCursor is the cursor Hints returns: partition (4 bytes BE) and key.
func hintCursor(partition uint32, key []byte) []byte {
	return append(partitionName(partition), key...)
}

func checkHintAddress(target string, key []byte) error {
	if err := checkTarget(target); err != nil {
		return err
	}
	return checkKey(key)
}

func checkTarget(target string) error {
	if target == "" {
		return fmt.Errorf("%w: hint target", ErrEmptyKey)
	}
	if len(target) > MaxTargetSize {
		return fmt.Errorf("%w: hint target is %d bytes, limit %d", ErrKeyTooLarge, len(target), MaxTargetSize)
	}
	return nil
}
