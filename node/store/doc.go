// Package store is a node's durable storage: one bbolt file, <dir>/dynamo.db,
// holding opaque byte values. It does not know the value format; a higher
// layer stores encoded versioned objects. It also keeps hints: writes held
// for another node (the target) while that node is unreachable, kept apart
// from the node's own objects until delivered. No other package imports bbolt.
//
// # Layout
//
//	objects/                 one nested bucket per ring partition
//	    <partition uint32 BE>/   key -> encoded object
//	meta/                    small named records (node identity, membership)
//	hints/                   one nested bucket per target node (name: its id)
//	    <target>/
//	        <partition uint32 BE>/   key -> seq uint64 BE + value
//	hintseq/                 seq uint64 BE -> ref to the hint with that seq:
//	                         len(target) byte, target, partition uint32 BE, key
//
// Partition buckets are named by the partition number as 4 bytes big-endian,
// so bbolt's byte order is numeric order and a single partition can be
// scanned, streamed, hashed or dropped on its own. Hints use the same
// partition buckets under their target, so a hint accepts every key Update
// accepts.
//
// A hint's seq comes from hintseq's bucket sequence, so seqs only grow and
// survive restarts; rewriting a hint gives it a new seq. hintseq orders all
// hints oldest first, which makes dropping the oldest a cursor's First. The
// hint counters are bucket sequences too: hints/ holds the total and each
// target bucket its own count, so counting never scans.
//
// Beside dynamo.db, dynamo.db.compact exists only while Open compacts: it is
// the copy being written, renamed over dynamo.db when complete.
//
// The tests' mustCheck verifies this layout as well as bbolt's own
// consistency check, including the hint invariants below.
//
// # What always holds
//
//   - One process owns a data dir: Open takes an exclusive file lock and
//     fails with ErrLocked after Options.LockTimeout instead of hanging. A
//     compaction replaces the file while holding its lock; an Open that was
//     waiting for that lock sees the file was replaced and locks the new one.
//   - A write that returned nil has been fsynced. Concurrent Updates share one
//     bbolt transaction and one fsync (group commit: a commit takes every
//     write that arrived while the one before it ran), so a lone writer waits
//     for one fsync and no timer, and batches grow with the load.
//   - Update is an atomic read-modify-write of one key, and UpdateHint of
//     one hint, through the same group commit. Their function may run more
//     than once (a first pass on a read snapshot, then inside the batch,
//     which bbolt may retry), so it must have no side effects.
//   - UpdateMany writes many keys of one partition in one transaction and
//     one fsync, outside group commit. Its function runs exactly once per
//     key; an error from it writes none of the keys.
//   - An Update or UpdateHint whose function declines to write on the
//     snapshot pass (ErrNoChange, an error, or deleting an absent key)
//     returns without joining a batch or waiting for an fsync.
//   - Every slice returned is a copy owned by the caller. Slices passed to
//     callbacks point into the memory map and are valid only during the call.
//   - After Close every method returns ErrClosed; none panics.
//   - Open compacts a file over Options.CompactMinBytes that is less than
//     half in use by copying its buckets (sequences included) into
//     dynamo.db.compact, fsyncing that, renaming it over dynamo.db and
//     fsyncing the dir. A crash at any point leaves dynamo.db whole, old or
//     new, and the next Open removes a leftover copy. A compaction that
//     fails before the rename (a full disk) leaves the old file in use and
//     is reported by DB.Compaction, not by Open.
//   - Every hint has exactly one hintseq entry, keyed by the hint's seq and
//     pointing back at it, and no other hintseq entries exist. The hint
//     counters equal the number of hints, in total and per target, and no
//     target or partition bucket under hints/ is empty. Every hint write
//     keeps all of this in one transaction.
//   - When an UpdateHint that wrote returns, at most Options.MaxHints hints
//     are stored. Lowering MaxHints across a restart takes effect at the
//     next such write, which drops the whole excess at once.
//
// # Caveats
//
//   - Callbacks (Update's, UpdateMany's, UpdateHint's and Scan's) must not
//     call methods of the same DB: Scan holds a read transaction, and a
//     write that needs to grow the memory map waits for every read
//     transaction to end; UpdateMany's holds the writer lock.
//   - bbolt publishes a commit to readers just before its final fsync, so a
//     read may see a write up to one fsync before that write's Update
//     returns. Such a write survives a process crash, not a power loss.
package store
