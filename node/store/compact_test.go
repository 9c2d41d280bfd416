package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// contents is everything fillStore stores, read back through the API, plus
// the last hint seq given out.
type contents struct {
	objects map[uint32]map[string]string
	meta    map[string]string
	hints   map[string][]Hint
	counts  map[string]int
	lastSeq uint64
}

var testMetaNames = []string{"identity", "membership"}

func readContents(tb testing.TB, db *DB) contents {
	tb.Helper()
	c := contents{
		objects: make(map[uint32]map[string]string),
		meta:    make(map[string]string),
		hints:   make(map[string][]Hint),
	}
	parts, err := db.Partitions()
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range parts {
		c.objects[p] = make(map[string]string)
		err := db.Scan(p, func(k, v []byte) error {
			c.objects[p][string(k)] = string(v)
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, name := range testMetaNames {
		v, err := db.GetMeta(name)
		if err != nil {
			tb.Fatal(err)
		}
		c.meta[name] = string(v)
	}
	targets, err := db.HintTargets()
	if err != nil {
		tb.Fatal(err)
	}
	for _, target := range targets {
		c.hints[target] = allHints(tb, db, target)
	}
	if c.counts, err = db.HintCounts(); err != nil {
		tb.Fatal(err)
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		c.lastSeq = tx.Bucket(bucketHintSeq).Sequence()
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// fillStore writes partitions 0 to 15 with 48 keys of 2 KiB each, a page
// each, meta records, and hints for three targets, some of them rewritten or
// deleted so that their seqs have gaps. That comes to about 3 MiB in use of
// a 4 MiB file: bbolt grows a small file in powers of two.
func fillStore(tb testing.TB, db *DB) {
	tb.Helper()
	value := bytes.Repeat([]byte("x"), 2048)
	for p := range uint32(16) {
		keys := keysOf(fmt.Sprint("p", p), 48)
		err := db.UpdateMany(p, keys, func(i int, _ []byte) ([]byte, error) {
			return append(bytes.Clone(keys[i]), value...), nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, name := range testMetaNames {
		if err := db.PutMeta(name, []byte("meta of "+name)); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range 30 {
		target := fmt.Sprint("node-", i%3)
		putHint(tb, db, target, uint32(i%4), fmt.Sprint("h", i), fmt.Sprint("hint ", i))
	}
	putHint(tb, db, "node-1", 1, "h1", "rewritten")
	putHint(tb, db, "node-0", 0, "h0", "") // an empty value, distinct from absent
	if ok, err := db.DeleteHint("node-2", 2, []byte("h2"), seqOf(tb, db, "node-2", 2, "h2")); !ok || err != nil {
		tb.Fatalf("DeleteHint = %v, %v", ok, err)
	}
}

func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

func TestCompactionGivesSpaceBack(t *testing.T) {
	dir := t.TempDir()
	opts := Options{CompactMinBytes: 64 << 10}
	db := openTestDB(t, dir, opts)
	if c := db.Compaction(); c.Done || c.Err != nil {
		t.Fatalf("new store: Compaction = %+v, want nothing done", c)
	}
	fillStore(t, db)
	for p := range uint32(14) {
		if err := db.DropPartition(p); err != nil {
			t.Fatal(err)
		}
	}
	want := readContents(t, db)
	stats, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if stats.InUseBytes <= 0 || stats.InUseBytes*2 >= stats.FileBytes {
		t.Fatalf("after dropping 14 of 16 partitions: Stats = %+v, want under half in use", stats)
	}
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, db.Path())

	db = openTestDB(t, dir, opts)
	c := db.Compaction()
	t.Logf("Stats before: %+v; Compaction: %+v", stats, c)
	if !c.Done || c.Err != nil || c.BeforeBytes != before || c.AfterBytes*2 >= before || c.Took <= 0 {
		t.Fatalf("Compaction = %+v, want done, from %d bytes to under half", c, before)
	}
	if size := fileSize(t, db.Path()); size != c.AfterBytes {
		t.Errorf("file is %d bytes, Compaction says %d", size, c.AfterBytes)
	}
	if _, err := os.Stat(db.Path() + compactSuffix); !os.IsNotExist(err) {
		t.Errorf("compaction file still there: %v", err)
	}
	if got := readContents(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("after compaction:\n got %+v\nwant %+v", got, want)
	}
	mustCheck(t, db)

	// Bucket sequences survived: new hints still get larger seqs, and the
	// counters still count.
	putHint(t, db, "node-2", 9, "after", "v")
	if seq := seqOf(t, db, "node-2", 9, "after"); seq != want.lastSeq+1 {
		t.Errorf("first hint after compaction got seq %d, want %d", seq, want.lastSeq+1)
	}
	wantCounts := want.counts
	wantCounts["node-2"]++
	mustCounts(t, db, wantCounts)
	put(t, db, 15, "after", "v")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// A compacted file is all in use: the next Open leaves it alone.
	db = openTestDB(t, dir, opts)
	if c := db.Compaction(); c.Done || c.Err != nil {
		t.Errorf("reopening a compacted file: Compaction = %+v, want nothing done", c)
	}
	if v := mustGet(t, db, 15, "after"); string(v) != "v" {
		t.Errorf("write after compaction lost: Get = %q", v)
	}
}

func TestNoCompaction(t *testing.T) {
	// Each case fills a store and drops what dropped says, then reopens it.
	cases := map[string]struct {
		opts    Options
		dropped uint32
	}{
		"file under CompactMinBytes": {Options{CompactMinBytes: 1 << 30}, 14},
		"compaction off":             {Options{CompactMinBytes: -1}, 14},
		"most of the file in use":    {Options{CompactMinBytes: 1}, 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := openTestDB(t, dir, tc.opts)
			fillStore(t, db)
			for p := range tc.dropped {
				if err := db.DropPartition(p); err != nil {
					t.Fatal(err)
				}
			}
			want := readContents(t, db)
			stats, err := db.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("Stats before reopen: %+v", stats)
			mustCheck(t, db)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			before := fileSize(t, db.Path())

			db = openTestDB(t, dir, tc.opts)
			c := db.Compaction()
			if c.Done || c.Err != nil || c.BeforeBytes != before || c.AfterBytes != before {
				t.Errorf("Compaction = %+v, want nothing done to a %d-byte file", c, before)
			}
			if size := fileSize(t, db.Path()); size != before {
				t.Errorf("file went from %d to %d bytes", before, size)
			}
			if got := readContents(t, db); !reflect.DeepEqual(got, want) {
				t.Fatalf("after reopen:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestLeftoverCompactionFileRemoved stands in for a crash during a
// compaction: the copy is left half written beside the intact file.
func TestLeftoverCompactionFileRemoved(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	put(t, db, 1, "k", "v")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, FileName+compactSuffix)
	if err := os.WriteFile(leftover, bytes.Repeat([]byte{0xAB}, 10000), 0o600); err != nil {
		t.Fatal(err)
	}

	db = openTestDB(t, dir, Options{})
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover compaction file still there: %v", err)
	}
	if v := mustGet(t, db, 1, "k"); string(v) != "v" {
		t.Errorf("Get = %q, want v", v)
	}
}

// TestOpenFollowsFileReplacedWhileWaiting has a second Open wait for the
// lock while the holder does what a compaction does: renames a copy over
// the file, then closes the old one. The second Open must end up on the
// copy, not on the old file it was waiting for, which is no longer named.
func TestOpenFollowsFileReplacedWhileWaiting(t *testing.T) {
	if _, err := os.ReadDir("/proc/self/fd"); err != nil {
		t.Skipf("cannot see open files: %v", err)
	}
	dir := t.TempDir()
	first := openTestDB(t, dir, Options{})
	put(t, first, 1, "both", "v")
	path, err := filepath.EvalSymlinks(first.Path())
	if err != nil {
		t.Fatal(err)
	}

	type opened struct {
		db  *DB
		err error
	}
	second := make(chan opened, 1)
	go func() {
		db, err := Open(dir, Options{LockTimeout: time.Minute})
		second <- opened{db, err}
	}()
	waitFor(t, "the second Open to open the file", func() bool { return openFiles(t, path) == 2 })

	copyPath := filepath.Join(dir, "copy")
	if err := first.bolt.View(func(tx *bolt.Tx) error { return tx.CopyFile(copyPath, 0o600) }); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(copyPath, path); err != nil {
		t.Fatal(err)
	}
	put(t, first, 1, "old-only", "lost")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	got := <-second
	if got.err != nil {
		t.Fatalf("second Open: %v", got.err)
	}
	t.Cleanup(func() {
		mustCheck(t, got.db)
		if err := got.db.Close(); err != nil {
			t.Error(err)
		}
	})
	if v := mustGet(t, got.db, 1, "both"); string(v) != "v" {
		t.Errorf("Get(both) = %q, want v", v)
	}
	if v := mustGet(t, got.db, 1, "old-only"); v != nil {
		t.Errorf("second Open uses the replaced file: Get(old-only) = %q", v)
	}
}

// openFiles counts this process's file descriptors open on path.
func openFiles(tb testing.TB, path string) int {
	tb.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test if it does not
// within 10 seconds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
