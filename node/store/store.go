package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the bbolt file inside the data dir.
const FileName = "dynamo.db"

// MaxKeySize is the longest key or meta name accepted, in bytes (bbolt's limit).
const MaxKeySize = bolt.MaxKeySize

const (
	defaultMaxBatchSize = 1000
	defaultLockTimeout  = time.Second
)

var (
	bucketObjects = []byte("objects")
	bucketMeta    = []byte("meta")
	bucketHints   = []byte("hints")
	bucketHintSeq = []byte("hintseq")
)

// Options tunes a DB. The zero value is ready for production.
type Options struct {
	// MaxBatchSize bounds how many writes share one transaction and fsync
	// (see groupCommit). Zero means 1000.
	MaxBatchSize int

	// LockTimeout bounds how long Open waits for another holder of the data
	// dir to let go before failing with ErrLocked. Zero means 1s.
	LockTimeout time.Duration

	// MaxHints bounds how many hints are kept, across all targets. A write
	// that takes the store past it drops the oldest hints. Zero means
	// 1,000,000.
	MaxHints int

	// CompactMinBytes is the smallest file Open compacts. bbolt never
	// shrinks its file, so when less than half of a file larger than this
	// holds live data (Stats.InUseBytes), Open copies that data into a new
	// file and swaps it in: the disk space freed by DropPartition comes
	// back at the next restart. Zero means 8 MiB; negative never compacts.
	CompactMinBytes int64
}

func (o Options) withDefaults() Options {
	if o.MaxBatchSize == 0 {
		o.MaxBatchSize = defaultMaxBatchSize
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.MaxHints == 0 {
		o.MaxHints = defaultMaxHints
	}
	if o.CompactMinBytes == 0 {
		o.CompactMinBytes = defaultCompactMinBytes
	}
	return o
}

// DB is a node's open store. Its methods are safe for concurrent use.
type DB struct {
	commits    groupCommit
	path       string
	bolt       *bolt.DB
	maxHints   int
	compaction Compaction  // what Open did; never changes after
	closed     atomic.Bool // set once by Close; bbolt itself rejects later use
}

// Open opens (creating if needed) the store in dir. dir is created with mode
// 0o700 if missing. Open may compact the file first (see
// Options.CompactMinBytes and DB.Compaction).
func Open(dir string, opts Options) (*DB, error) {
	if dir == "" {
		return nil, errors.New("store: open: empty data dir")
	}
	// CompactMinBytes is left out: negative is how compaction is turned off.
	if opts.MaxBatchSize < 0 || opts.LockTimeout < 0 || opts.MaxHints < 0 {
		return nil, fmt.Errorf("store: open: negative option in %+v", opts)
	}
	opts = opts.withDefaults()

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	bdb, err := openLocked(path, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	// The lock is ours, so a compaction file can only be left from a
	// crash. The directory is synced on every Open, not only after a
	// compaction's rename: that also makes a new file's name durable, and
	// covers a rename whose sync failed in an earlier Open.
	if err := removeLeftover(path); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	bdb, compaction, err := compactIfMostlyFree(bdb, path, opts)
	if err != nil {
		return nil, err
	}
	if err := createTopBuckets(bdb); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("store: create top buckets in %s: %w", path, err)
	}
	db := &DB{path: path, bolt: bdb, maxHints: opts.MaxHints, compaction: compaction}
	db.commits.maxBatch = opts.MaxBatchSize
	return db, nil
}

// createTopBuckets creates the top buckets that are missing. Usually none
// are, and then it writes nothing: a write would cost an fsync and, after a
// compaction, grow the file again before the node has written anything.
func createTopBuckets(bdb *bolt.DB) error {
	names := [][]byte{bucketObjects, bucketMeta, bucketHints, bucketHintSeq}
	missing := false
	err := bdb.View(func(tx *bolt.Tx) error {
		for _, name := range names {
			missing = missing || tx.Bucket(name) == nil
		}
		return nil
	})
	if err != nil || !missing {
		return err
	}
	return bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range names {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close waits for running transactions and releases the file. A pending
// Update that has not committed yet returns ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return ErrClosed
	}
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", db.path, err)
	}
	return nil
}

// Path returns the path of the bbolt file.
func (db *DB) Path() string { return db.path }

// Get returns a copy of the stored value, or nil (no error) when absent.
func (db *DB) Get(partition uint32, key []byte) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var val []byte
	err := db.view(func(tx *bolt.Tx) error {
		if b := partitionBucket(tx, partition); b != nil {
			val = bytes.Clone(b.Get(key))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: get from partition %d: %w", partition, err)
	}
	return val, nil
}

// Update atomically replaces the value of key with fn(old) and returns the
// value stored, durably. The returned slice is owned by the caller.
//
// old is nil when the key is absent and is valid only during fn. fn may be
// called more than once, so it must be free of side effects other than its
// result. If fn returns a nil slice and nil error, the key is deleted and
// Update returns nil. If fn returns ErrNoChange, nothing is written and Update
// returns a copy of old without waiting for an fsync. Any other error from fn
// is returned as is, with nothing written.
func (db *DB) Update(partition uint32, key []byte, fn func(old []byte) ([]byte, error)) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}

	// First run fn against a snapshot. When it declines to write we answer
	// from there: no fsync to wait for, and no failing call inside a batch,
	// which would make bbolt roll back and rerun every other call in it.
	var (
		current []byte
		fnErr   error
		writes  bool
	)
	err := db.view(func(tx *bolt.Tx) error {
		var old []byte
		if b := partitionBucket(tx, partition); b != nil {
			old = b.Get(key)
		}
		var noChange bool
		writes, noChange, fnErr = dryRun(old, fn)
		if noChange {
			current = bytes.Clone(old)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: update partition %d: %w", partition, err)
	}
	if !writes {
		return current, fnErr
	}

	// The key may have changed since the snapshot, so fn runs again on the
	// value inside the write transaction. bbolt may rerun this closure, so
	// it sets every result on each run.
	var stored []byte
	err = db.batch(func(tx *bolt.Tx) error {
		stored, fnErr = nil, nil
		name := partitionName(partition)
		objects := tx.Bucket(bucketObjects)
		b := objects.Bucket(name)
		var old []byte
		if b != nil {
			old = b.Get(key)
		}
		next, err := fn(old)
		switch {
		case errors.Is(err, ErrNoChange):
			stored = bytes.Clone(old)
			return nil
		case err != nil:
			// Not returned to bbolt: that would roll back the whole batch.
			fnErr = err
			return nil
		case next == nil:
			if b == nil {
				return nil
			}
			return b.Delete(key)
		}
		if b == nil {
			if b, err = objects.CreateBucket(name); err != nil {
				return err
			}
		}
		// Copy: next may alias old, which points into the memory map that
		// this transaction may remap before its pages are written.
		stored = bytes.Clone(next)
		return b.Put(key, stored)
	})
	if err != nil {
		return nil, fmt.Errorf("store: update partition %d: %w", partition, err)
	}
	if fnErr != nil {
		return nil, fnErr
	}
	return stored, nil
}

// UpdateMany applies a read-modify-write to every key of keys, all in one
// partition, in a single transaction with a single fsync: the way to store a
// page of a partition handoff without paying an fsync per key. Each key is
// treated as Update treats one: fn(i, old) returns the new value of keys[i];
// old is nil when the key is absent and valid only during fn; a nil result
// deletes the key; ErrNoChange leaves the key as it is. Any other error from
// fn stops UpdateMany, which returns that error as is with nothing written.
// Keys are checked like Update's before fn is first called; one bad key
// fails the whole call.
//
// Unlike Update, UpdateMany does not join a group commit: fn runs exactly
// once per key, in order (a key listed twice sees what its first entry
// wrote), inside a write transaction that holds bbolt's writer lock until
// the last key is done, so fn should be quick. When fn changes nothing,
// the transaction is rolled back and UpdateMany returns without an fsync.
// Empty keys is a no-op.
func (db *DB) UpdateMany(partition uint32, keys [][]byte, fn func(i int, old []byte) ([]byte, error)) error {
	for i, key := range keys {
		if err := checkKey(key); err != nil {
			return fmt.Errorf("store: update many in partition %d: key %d: %w", partition, i, err)
		}
	}
	if db.closed.Load() {
		return ErrClosed
	}
	if len(keys) == 0 {
		return nil
	}

	var fnErr error
	err := db.update(func(tx *bolt.Tx) error {
		name := partitionName(partition)
		objects := tx.Bucket(bucketObjects)
		b := objects.Bucket(name)
		wrote := false
		for i, key := range keys {
			var old []byte
			if b != nil {
				old = b.Get(key)
			}
			next, err := fn(i, old)
			switch {
			case errors.Is(err, ErrNoChange):
				continue
			case err != nil:
				fnErr = err
				return errRollback
			case next == nil:
				if old == nil {
					continue
				}
				if err := b.Delete(key); err != nil {
					return err
				}
				wrote = true
				continue
			}
			if b == nil {
				if b, err = objects.CreateBucket(name); err != nil {
					return err
				}
			}
			// Copy: next may alias old, which points into the memory map
			// that this transaction may remap before its pages are written.
			if err := b.Put(key, bytes.Clone(next)); err != nil {
				return err
			}
			wrote = true
		}
		if !wrote {
			return errRollback // a commit would cost an fsync for nothing
		}
		return nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case errors.Is(err, errRollback):
		return nil
	case err != nil:
		return fmt.Errorf("store: update %d keys in partition %d: %w", len(keys), partition, err)
	}
	return nil
}

// Scan calls fn for every key of the partition in key order, inside one read
// transaction. key and value are valid only during the call. An error from fn
// stops the scan and is returned as is.
func (db *DB) Scan(partition uint32, fn func(key, value []byte) error) error {
	return db.ScanFrom(partition, nil, fn)
}

// ScanFrom is Scan starting after key after (nil: from the first key), for
// streaming a partition in pages.
func (db *DB) ScanFrom(partition uint32, after []byte, fn func(key, value []byte) error) error {
	return db.ScanSnapshot(partition, after, nil, fn)
}

// ScanSnapshot is ScanFrom that also calls begun (when not nil) once its
// read transaction has begun and before the first key: every write that
// commits after begun returns is missing from the scan, every write that
// committed before it is in it.
func (db *DB) ScanSnapshot(partition uint32, after []byte, begun func(), fn func(key, value []byte) error) error {
	var fnErr error
	err := db.view(func(tx *bolt.Tx) error {
		if begun != nil {
			begun()
		}
		b := partitionBucket(tx, partition)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		if after != nil {
			if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if fnErr = fn(k, v); fnErr != nil {
				break
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: scan partition %d: %w", partition, err)
	}
	return fnErr
}

// Count returns how many keys a partition holds (walking its pages, not
// its values).
func (db *DB) Count(partition uint32) (int, error) {
	n := 0
	err := db.view(func(tx *bolt.Tx) error {
		if b := partitionBucket(tx, partition); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: count partition %d: %w", partition, err)
	}
	return n, nil
}

// Partitions returns the partition numbers that hold at least one key,
// ascending.
func (db *DB) Partitions() ([]uint32, error) {
	var parts []uint32
	err := db.view(func(tx *bolt.Tx) error {
		objects := tx.Bucket(bucketObjects)
		c := objects.Cursor()
		for name, v := c.First(); name != nil; name, v = c.Next() {
			if v != nil || len(name) != 4 {
				continue // not a partition bucket; mustCheck rules these out
			}
			if k, _ := objects.Bucket(name).Cursor().First(); k != nil {
				parts = append(parts, binary.BigEndian.Uint32(name))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	return parts, nil
}

// DropPartition deletes a whole partition durably. Dropping an absent
// partition is not an error.
func (db *DB) DropPartition(partition uint32) error {
	err := db.update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketObjects).DeleteBucket(partitionName(partition))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: drop partition %d: %w", partition, err)
	}
	return nil
}

// GetMeta returns a copy of the named record, or nil when absent.
func (db *DB) GetMeta(name string) ([]byte, error) {
	if err := checkKey([]byte(name)); err != nil {
		return nil, err
	}
	var val []byte
	err := db.view(func(tx *bolt.Tx) error {
		val = bytes.Clone(tx.Bucket(bucketMeta).Get([]byte(name)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: get meta %q: %w", name, err)
	}
	return val, nil
}

// PutMeta durably stores the named record.
func (db *DB) PutMeta(name string, value []byte) error {
	if err := checkKey([]byte(name)); err != nil {
		return err
	}
	err := db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte(name), value)
	})
	if err != nil {
		return fmt.Errorf("store: put meta %q: %w", name, err)
	}
	return nil
}

// Stats describes the store's size.
type Stats struct {
	Keys      int64 // keys across all partitions
	FileBytes int64 // size of the bbolt file

	// InUseBytes is how much of the file holds live data (objects, meta and
	// hints, with bbolt's own pages). The rest is free pages, which bbolt
	// reuses before it grows the file, and space it allocated ahead of need
	// at the end. Open compacts a file when this is under half of it.
	InUseBytes int64
}

// Stats counts keys across partitions (walking every partition's pages) and
// reports the file's size and how much of it is in use.
func (db *DB) Stats() (Stats, error) {
	var s Stats
	err := db.view(func(tx *bolt.Tx) error {
		objects := tx.Bucket(bucketObjects)
		return objects.ForEachBucket(func(name []byte) error {
			s.Keys += int64(objects.Bucket(name).Stats().KeyN)
			return nil
		})
	})
	if err != nil {
		return Stats{}, fmt.Errorf("store: stats: %w", err)
	}
	s.FileBytes, s.InUseBytes, err = db.Size()
	return s, err
}

// Size reports the file's size and how much of it is in use (see
// Stats.InUseBytes), without walking the data: cheap enough for every
// metrics scrape.
func (db *DB) Size() (fileBytes, inUse int64, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		inUse = inUseBytes(db.bolt, tx)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: size: %w", err)
	}
	fi, err := os.Stat(db.path)
	if err != nil {
		return 0, 0, fmt.Errorf("store: size: %w", err)
	}
	return fi.Size(), inUse, nil
}

// view, update and batch run fn in a bbolt transaction, reporting use after
// Close as ErrClosed whether our flag or bbolt notices it first.
func (db *DB) view(fn func(*bolt.Tx) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return closedErr(db.bolt.View(fn))
}

func (db *DB) update(fn func(*bolt.Tx) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return closedErr(db.bolt.Update(fn))
}

func (db *DB) batch(fn func(*bolt.Tx) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return closedErr(db.commits.do(db.bolt, fn))
}

// errRollback makes bbolt roll back a write transaction that has nothing to
// commit, or whose caller's function failed.
var errRollback = errors.New("store: roll back")

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func partitionName(partition uint32) []byte {
	return binary.BigEndian.AppendUint32(make([]byte, 0, 4), partition)
}

// partitionBucket returns the partition's bucket, or nil if it was never
// written or has been dropped.
func partitionBucket(tx *bolt.Tx, partition uint32) *bolt.Bucket {
	return tx.Bucket(bucketObjects).Bucket(partitionName(partition))
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), MaxKeySize)
	}
	return nil
}

// dryRun runs an update function on a snapshot of the old value and
// reports whether it would write, so updates that change nothing skip the
// write transaction and its fsync.
func dryRun(old []byte, fn func([]byte) ([]byte, error)) (writes, noChange bool, fnErr error) {
	next, err := fn(old)
	switch {
	case errors.Is(err, ErrNoChange):
		return false, true, nil
	case err != nil:
		return false, false, err
	case next == nil && old == nil: // deleting what is absent
		return false, false, nil
	}
	return true, false, nil
}
