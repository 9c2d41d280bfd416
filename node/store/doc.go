// Package store is a node's durable storage: one bbolt file, <dir>/dynamo.db,
// holding opaque byte values. It does not know the value format; a higher
// layer stores encoded versioned objects. No other package imports bbolt.
//
// # Layout
//
//	objects/                 one nested bucket per ring partition
//	    <partition uint32 BE>/   key -> encoded object
//	meta/                    small named records (node identity, membership)
//	hints/                   reserved for hinted handoff; nothing exposed yet
//
// Partition buckets are named by the partition number as 4 bytes big-endian,
// so bbolt's byte order is numeric order and a single partition can be
// scanned, streamed, hashed or dropped on its own. The tests' mustCheck
// verifies this layout as well as bbolt's own consistency check.
//
// # What always holds
//
//   - One process owns a data dir: Open takes an exclusive file lock and
//     fails with ErrLocked after Options.LockTimeout instead of hanging.
//   - A write that returned nil has been fsynced. Concurrent Updates share one
//     bbolt transaction and one fsync (group commit via bolt.DB.Batch), so
//     each waits up to Options.MaxBatchDelay for company; a lone writer pays
//     that delay on every write.
//   - Update is an atomic read-modify-write of one key. Its function may run
//     more than once (a first pass on a read snapshot, then inside the batch,
//     which bbolt may retry), so it must have no side effects.
//   - An Update whose function declines to write on the snapshot pass
//     (ErrNoChange, an error, or deleting an absent key) returns without
//     joining a batch or waiting for an fsync.
//   - Every slice returned is a copy owned by the caller. Slices passed to
//     callbacks point into the memory map and are valid only during the call.
//   - After Close every method returns ErrClosed; none panics.
//
// # Caveats
//
//   - Callbacks (Update's and Scan's) must not call methods of the same DB:
//     Scan holds a read transaction, and a write that needs to grow the
//     memory map waits for every read transaction to end.
//   - bbolt publishes a commit to readers just before its final fsync, so a
//     read may see a write up to one fsync before that write's Update
//     returns. Such a write survives a process crash, not a power loss.
package store
