package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactSuffix names the file a compaction writes, beside FileName, until
// it renames it over FileName.
const compactSuffix = ".compact"

const (
	defaultCompactMinBytes = 8 << 20

	// compactTxBytes bounds the data one transaction of the copy holds in
	// memory; a store larger than this is copied in several commits.
	compactTxBytes = 64 << 20
)

// Compaction is what Open did about free space in the file, for the node to
// log.
type Compaction struct {
	// Done is whether Open replaced the file with a compacted copy.
	Done bool

	// BeforeBytes and AfterBytes are the file's size as Open found it and
	// as Open left it; they are equal when Done is false.
	BeforeBytes, AfterBytes int64

	// Took is how long the compaction took, from the start of the copy
	// until the new file was open.
	Took time.Duration

	// Err is why a compaction that Open started did not finish. Open then
	// went on with the file as it was, so that a full disk, the usual
	// cause, does not also keep the node from starting.
	Err error
}

// Compaction returns what Open did about free space in the file.
func (db *DB) Compaction() Compaction { return db.compaction }

// compactIfMostlyFree compacts the open file at path when it is larger than
// opts.CompactMinBytes and less than half of it is in use, and returns the
// DB to use from then on: bdb itself, or the compacted file opened in its
// place. On error every DB is closed.
//
// The copy is written to a separate file and renamed over path while bdb
// still holds the lock on the old one, so a crash at any point leaves path
// naming either the old file or the complete, fsynced copy; a partial copy
// is removed by the next Open.
func compactIfMostlyFree(bdb *bolt.DB, path string, opts Options) (*bolt.DB, Compaction, error) {
	fi, err := os.Stat(path)
	if err != nil {
		_ = bdb.Close()
		return nil, Compaction{}, fmt.Errorf("store: measure %s: %w", path, err)
	}
	fileBytes := fi.Size()
	var inUse int64
	err = bdb.View(func(tx *bolt.Tx) error { inUse = inUseBytes(bdb, tx); return nil })
	if err != nil {
		_ = bdb.Close()
		return nil, Compaction{}, fmt.Errorf("store: measure %s: %w", path, err)
	}
	c := Compaction{BeforeBytes: fileBytes, AfterBytes: fileBytes}
	if opts.CompactMinBytes < 0 || fileBytes <= opts.CompactMinBytes || inUse*2 >= fileBytes {
		return bdb, c, nil
	}

	start := time.Now()
	tmp := path + compactSuffix
	size, err := copyLive(bdb, tmp, opts.LockTimeout)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		c.Err = fmt.Errorf("store: compact %s: %w", path, err)
		if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.Err = errors.Join(c.Err, err)
		}
		return bdb, c, nil
	}

	// path names the copy now. The old file is unlinked and must not be
	// written again, so failures from here on fail Open.
	if err := bdb.Close(); err != nil {
		return nil, c, fmt.Errorf("store: close %s after compacting it: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, c, err
	}
	if bdb, err = openLocked(path, opts.LockTimeout); err != nil {
		return nil, c, err
	}
	c.Done, c.AfterBytes, c.Took = true, size, time.Since(start)
	return bdb, c, nil
}

// copyLive copies every bucket of src into a new file at dst, nested buckets
// and bucket sequences included, with pages filled full, and fsyncs it. It
// returns the size of the new file.
func copyLive(src *bolt.DB, dst string, lockTimeout time.Duration) (int64, error) {
	// NoSync: the copy is fsynced once, at the end. Nobody reads it before.
	to, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: lockTimeout, NoSync: true})
	if err != nil {
		return 0, err
	}
	if err := bolt.Compact(to, src, compactTxBytes); err != nil {
		_ = to.Close()
		return 0, err
	}
	var size int64
	if err := to.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		_ = to.Close()
		return 0, err
	}
	if err := to.Close(); err != nil {
		return 0, err
	}

	// bbolt grows a file ahead of need, and in large steps; the copy needs
	// none of that space until it is written to, so it ends after its last
	// page, as a bbolt backup does.
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return 0, err
	}
	return size, f.Close()
}

// inUseBytes is how much of the file holds pages that tx can reach: the
// pages up to the file's high-water mark less those on bbolt's freelist.
// The freelist counts come from bbolt's statistics of the last write, not
// from tx, which is close enough for a size.
func inUseBytes(bdb *bolt.DB, tx *bolt.Tx) int64 {
	st := bdb.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(bdb.Info().PageSize)
	return tx.Size() - free
}

// openLocked opens the bbolt file at path and takes its lock. Another
// process's Open may compact the file while this one waits for the lock:
// it then renames a new file over path, and the lock this one gets is on
// the old, unlinked file, whose writes would be lost. So openLocked checks
// that path still names the file it locked, and otherwise starts again.
func openLocked(path string, timeout time.Duration) (*bolt.DB, error) {
	const attempts = 3 // each a compaction by another process: already unlikely
	for range attempts {
		var file *os.File
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{
			Timeout: timeout,
			// The free list is not written on every commit (bbolt rebuilds
			// it from the pages at open): commits write only what changed.
			NoFreelistSync: true,
			FreelistType:   bolt.FreelistMapType,
			OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, perm)
				if file == nil {
					file = f // the data file: bbolt opens it first, and once
				}
				return f, err
			},
		})
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("store: open %s: another process holds the data dir (waited %v): %w",
				path, timeout, ErrLocked)
		}
		if err != nil {
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		same, err := stillNamedBy(file, path)
		if err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		if same {
			return bdb, nil
		}
		if err := bdb.Close(); err != nil {
			return nil, fmt.Errorf("store: open %s: close replaced file: %w", path, err)
		}
	}
	return nil, fmt.Errorf("store: open %s: replaced %d times while waiting for its lock: %w",
		path, attempts, ErrLocked)
}

// stillNamedBy reports whether path names the open file f.
func stillNamedBy(f *os.File, path string) (bool, error) {
	open, err := f.Stat()
	if err != nil {
		return false, err
	}
	named, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(open, named), nil
}

// removeLeftover removes the copy a compaction interrupted by a crash left
// beside the file at path. The caller holds the file's lock.
func removeLeftover(path string) error {
	err := os.Remove(path + compactSuffix)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: remove unfinished compaction: %w", err)
	}
	return nil
}

// syncDir fsyncs the directory dir, making the names in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync data dir: %w", err)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("store: sync data dir %s: %w", dir, err)
	}
	return d.Close()
}
