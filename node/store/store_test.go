package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTestDB opens a DB in dir that is checked by mustCheck and closed when
// the test ends, unless the test closed it itself.
func openTestDB(tb testing.TB, dir string, opts Options) *DB {
	tb.Helper()
	db, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if db.closed.Load() {
			return
		}
		mustCheck(tb, db)
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// mustCheck runs bbolt's consistency check and verifies the layout doc.go
// promises: exactly the objects, meta, hints and hintseq top buckets; objects
// holds only buckets named by 4-byte partition numbers; partitions and meta
// hold only plain key/value pairs; checkHints holds for the hints.
func mustCheck(tb testing.TB, db *DB) {
	tb.Helper()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			tb.Errorf("bbolt check: %v", err)
		}

		var top []string
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			top = append(top, string(name))
			return nil
		}); err != nil {
			return err
		}
		if want := []string{"hints", "hintseq", "meta", "objects"}; !slices.Equal(top, want) {
			tb.Errorf("top buckets = %q, want %q", top, want)
		}

		plain := func(where string, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					tb.Errorf("%s holds nested bucket %x", where, k)
				}
				return nil
			})
		}
		objects := tx.Bucket(bucketObjects)
		if err := objects.ForEach(func(k, v []byte) error {
			if v != nil || len(k) != 4 {
				tb.Errorf("objects holds %x, want only 4-byte partition buckets", k)
				return nil
			}
			return plain(fmt.Sprintf("partition %d", binary.BigEndian.Uint32(k)), objects.Bucket(k))
		}); err != nil {
			return err
		}
		checkHints(tb, tx)
		return plain("meta", tx.Bucket(bucketMeta))
	})
	if err != nil {
		tb.Fatalf("consistency check: %v", err)
	}
}

func put(tb testing.TB, db *DB, partition uint32, key, value string) {
	tb.Helper()
	got, err := db.Update(partition, []byte(key), func([]byte) ([]byte, error) { return []byte(value), nil })
	if err != nil {
		tb.Fatalf("Update(%d, %q): %v", partition, key, err)
	}
	if string(got) != value {
		tb.Fatalf("Update(%d, %q) = %q, want %q", partition, key, got, value)
	}
}

func mustGet(tb testing.TB, db *DB, partition uint32, key string) []byte {
	tb.Helper()
	v, err := db.Get(partition, []byte(key))
	if err != nil {
		tb.Fatalf("Get(%d, %q): %v", partition, key, err)
	}
	return v
}

// lastTxID is the id of the last committed write transaction.
func lastTxID(tb testing.TB, db *DB) int {
	tb.Helper()
	var id int
	if err := db.bolt.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		tb.Fatal(err)
	}
	return id
}

func TestRoundTrip(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})

	if v := mustGet(t, db, 1, "k"); v != nil {
		t.Fatalf("absent key: Get = %q, want nil", v)
	}
	put(t, db, 1, "k", "v1")
	if v := mustGet(t, db, 1, "k"); string(v) != "v1" {
		t.Fatalf("Get = %q, want v1", v)
	}

	got, err := db.Update(1, []byte("k"), func(old []byte) ([]byte, error) {
		return append(bytes.Clone(old), "+v2"...), nil
	})
	if err != nil || string(got) != "v1+v2" {
		t.Fatalf("read-modify-write: Update = %q, %v; want v1+v2", got, err)
	}

	// An empty value is stored, and distinct from absent.
	put(t, db, 1, "empty", "")
	if v := mustGet(t, db, 1, "empty"); v == nil || len(v) != 0 {
		t.Fatalf("empty value: Get = %#v, want non-nil empty", v)
	}

	// A nil result deletes.
	got, err = db.Update(1, []byte("k"), func([]byte) ([]byte, error) { return nil, nil })
	if err != nil || got != nil {
		t.Fatalf("delete: Update = %q, %v; want nil, nil", got, err)
	}
	if v := mustGet(t, db, 1, "k"); v != nil {
		t.Fatalf("after delete: Get = %q, want nil", v)
	}
}

func TestUpdateThatWritesNothing(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	put(t, db, 3, "k", "v")
	before := lastTxID(t, db)

	got, err := db.Update(3, []byte("k"), func(old []byte) ([]byte, error) { return []byte("ignored"), ErrNoChange })
	if err != nil || string(got) != "v" {
		t.Fatalf("ErrNoChange: Update = %q, %v; want v, nil", got, err)
	}
	got, err = db.Update(3, []byte("absent"), func(old []byte) ([]byte, error) { return nil, fmt.Errorf("wrapped: %w", ErrNoChange) })
	if err != nil || got != nil {
		t.Fatalf("ErrNoChange on absent key: Update = %q, %v; want nil, nil", got, err)
	}
	if _, err := db.Update(3, []byte("absent"), func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatalf("deleting absent key: %v", err)
	}
	boom := errors.New("boom")
	if _, err := db.Update(3, []byte("k"), func([]byte) ([]byte, error) { return []byte("x"), boom }); err != boom {
		t.Fatalf("fn error: Update error = %v, want %v unwrapped", err, boom)
	}

	if after := lastTxID(t, db); after != before {
		t.Fatalf("write transactions committed: tx id %d -> %d", before, after)
	}
	if v := mustGet(t, db, 3, "k"); string(v) != "v" {
		t.Fatalf("Get = %q, want v", v)
	}
	if parts, _ := db.Partitions(); !slices.Equal(parts, []uint32{3}) {
		t.Fatalf("Partitions = %v, want [3]", parts)
	}
}

func TestValuesAreCopies(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})

	mine := []byte("value")
	got, err := db.Update(0, []byte("k"), func([]byte) ([]byte, error) { return mine, nil })
	if err != nil {
		t.Fatal(err)
	}
	mine[0] = 'X'
	got[1] = 'X'
	if v := mustGet(t, db, 0, "k"); string(v) != "value" {
		t.Fatalf("after mutating fn's result and Update's result: Get = %q, want value", v)
	}

	v := mustGet(t, db, 0, "k")
	v[0] = 'X'
	if v := mustGet(t, db, 0, "k"); string(v) != "value" {
		t.Fatalf("after mutating Get's result: Get = %q, want value", v)
	}

	// fn may return old itself (it points into the memory map); what is
	// stored and returned must still be independent copies.
	got, err = db.Update(0, []byte("k"), func(old []byte) ([]byte, error) { return old, nil })
	if err != nil || string(got) != "value" {
		t.Fatalf("returning old: Update = %q, %v", got, err)
	}
	got[0] = 'X'
	got, err = db.Update(0, []byte("k"), func(old []byte) ([]byte, error) { return nil, ErrNoChange })
	if err != nil || string(got) != "value" {
		t.Fatalf("ErrNoChange: Update = %q, %v", got, err)
	}
	got[0] = 'X'
	if v := mustGet(t, db, 0, "k"); string(v) != "value" {
		t.Fatalf("after mutating returned copies of old: Get = %q, want value", v)
	}
}

func TestPartitionsAreIsolated(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})

	// Partition numbers whose little-endian order would differ.
	parts := []uint32{0, 1, 256, 1 << 24, math.MaxUint32}
	for _, p := range parts {
		for _, k := range []string{"c", "a", "b"} {
			put(t, db, p, k, fmt.Sprintf("%s@%d", k, p))
		}
	}
	put(t, db, 7, "gone", "x")
	if _, err := db.Update(7, []byte("gone"), func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}

	got, err := db.Partitions()
	if err != nil || !slices.Equal(got, parts) {
		t.Fatalf("Partitions = %v, %v; want %v (emptied partition 7 excluded)", got, err, parts)
	}

	var scanned []string
	err = db.Scan(256, func(k, v []byte) error {
		scanned = append(scanned, string(k)+"="+string(v))
		return nil
	})
	if want := []string{"a=a@256", "b=b@256", "c=c@256"}; err != nil || !slices.Equal(scanned, want) {
		t.Fatalf("Scan(256) = %q, %v; want %q", scanned, err, want)
	}

	stop := errors.New("stop")
	calls := 0
	if err := db.Scan(1, func(k, v []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Scan stopping early = %v after %d calls, want %v after 1", err, calls, stop)
	}
	if err := db.Scan(42, func(k, v []byte) error { t.Errorf("absent partition yielded %q", k); return nil }); err != nil {
		t.Fatal(err)
	}

	if err := db.DropPartition(1); err != nil {
		t.Fatal(err)
	}
	if err := db.DropPartition(1); err != nil {
		t.Fatalf("dropping an absent partition: %v", err)
	}
	if v := mustGet(t, db, 1, "a"); v != nil {
		t.Fatalf("dropped partition: Get = %q, want nil", v)
	}
	if v := mustGet(t, db, 0, "a"); string(v) != "a@0" {
		t.Fatalf("neighbour of dropped partition: Get = %q, want a@0", v)
	}
	got, _ = db.Partitions()
	if want := []uint32{0, 256, 1 << 24, math.MaxUint32}; !slices.Equal(got, want) {
		t.Fatalf("after drop: Partitions = %v, want %v", got, want)
	}

	stats, err := db.Stats()
	if err != nil || stats.Keys != 12 || stats.FileBytes <= 0 {
		t.Fatalf("Stats = %+v, %v; want 12 keys and a file size", stats, err)
	}
}

func TestMeta(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	if v, err := db.GetMeta("identity"); v != nil || err != nil {
		t.Fatalf("absent meta = %q, %v; want nil, nil", v, err)
	}
	if err := db.PutMeta("identity", []byte("node-a")); err != nil {
		t.Fatal(err)
	}
	v, err := db.GetMeta("identity")
	if err != nil || string(v) != "node-a" {
		t.Fatalf("GetMeta = %q, %v; want node-a", v, err)
	}
	v[0] = 'X'
	if v, _ := db.GetMeta("identity"); string(v) != "node-a" {
		t.Fatalf("GetMeta returned a shared slice: now %q", v)
	}
	if err := db.PutMeta("", nil); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("PutMeta empty name = %v, want ErrEmptyKey", err)
	}
}

func TestKeyLimits(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	set := func([]byte) ([]byte, error) { return []byte("v"), nil }

	if _, err := db.Update(0, nil, set); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Update empty key = %v, want ErrEmptyKey", err)
	}
	if _, err := db.Get(0, []byte{}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Get empty key = %v, want ErrEmptyKey", err)
	}
	huge := bytes.Repeat([]byte("k"), MaxKeySize+1)
	if _, err := db.Update(0, huge, set); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("Update huge key = %v, want ErrKeyTooLarge", err)
	}
	if _, err := db.Get(0, huge); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("Get huge key = %v, want ErrKeyTooLarge", err)
	}
	if err := db.PutMeta(string(huge), nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("PutMeta huge name = %v, want ErrKeyTooLarge", err)
	}
	largest := huge[:MaxKeySize]
	if _, err := db.Update(0, largest, set); err != nil {
		t.Errorf("Update key of MaxKeySize: %v", err)
	}
	if v, err := db.Get(0, largest); err != nil || string(v) != "v" {
		t.Errorf("Get key of MaxKeySize = %q, %v", v, err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	const writers, perWriter = 16, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("w%02d-%03d", w, i)
				if _, err := db.Update(uint32(i%5), []byte(key), func([]byte) ([]byte, error) { return []byte(key), nil }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := db.PutMeta("membership", []byte("a,b,c")); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTestDB(t, dir, Options{})
	for w := range writers {
		for i := range perWriter {
			key := fmt.Sprintf("w%02d-%03d", w, i)
			if v := mustGet(t, db, uint32(i%5), key); string(v) != key {
				t.Fatalf("after reopen: Get(%q) = %q", key, v)
			}
		}
	}
	if v, _ := db.GetMeta("membership"); string(v) != "a,b,c" {
		t.Fatalf("after reopen: meta = %q", v)
	}
	if s, _ := db.Stats(); s.Keys != writers*perWriter {
		t.Fatalf("after reopen: Stats.Keys = %d, want %d", s.Keys, writers*perWriter)
	}
}

const crashChildEnv = "DYNAMO_STORE_CRASH_CHILD_DIR"

// crashValue is what the crash child stores under key, so the parent can
// check contents as well as presence.
func crashValue(key string) []byte { return []byte(key + strings.Repeat("=", 100)) }

// runCrashChild writes keys from several goroutines and prints "ack <key>"
// after each Update returns, until the parent kills it.
func runCrashChild(dir string) {
	db, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	const writers, perWriter = 8, 100_000 // bound the run if the parent never kills
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("w%d-%06d", w, i)
				if _, err := db.Update(uint32(i%16), []byte(key), func([]byte) ([]byte, error) { return crashValue(key), nil }); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				os.Stdout.WriteString("ack " + key + "\n") // one write: lines never interleave
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}

// TestKillLosesNoAcknowledgedWrite kills a writing child process with SIGKILL
// and checks that every write it acknowledged is on disk.
func TestKillLosesNoAcknowledgedWrite(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir)
		return
	}
	const killAfter = 300

	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillLosesNoAcknowledgedWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var acked []string
	killed := false
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		key, ok := strings.CutPrefix(lines.Text(), "ack ")
		if !ok {
			continue
		}
		acked = append(acked, key)
		if !killed && len(acked) == killAfter {
			if err := cmd.Process.Signal(os.Kill); err != nil {
				t.Fatalf("SIGKILL: %v", err)
			}
			killed = true
		}
	}
	_ = cmd.Wait() // "signal: killed"; the state is checked below
	if !killed || cmd.ProcessState.Exited() {
		t.Fatalf("child was not killed mid-run (%v after %d acks); stderr:\n%s", cmd.ProcessState, len(acked), stderr.String())
	}

	db := openTestDB(t, dir, Options{})
	stats, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range acked {
		var w, i int
		if _, err := fmt.Sscanf(key, "w%d-%d", &w, &i); err != nil {
			t.Fatalf("child acked malformed key %q", key)
		}
		if v := mustGet(t, db, uint32(i%16), key); !bytes.Equal(v, crashValue(key)) {
			t.Errorf("acknowledged key %q lost after SIGKILL: Get = %q", key, v)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL (%d keys on disk)", len(acked), stats.Keys)
}

// TestConcurrentUpdatesAreAtomic runs read-modify-write counters from 64
// goroutines. Some Updates panic once inside their batch, which makes bbolt
// roll back and rerun the rest of that batch; the counts must still be exact.
func TestConcurrentUpdatesAreAtomic(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	const goroutines, rounds, keys = 64, 25, 4

	var fnCalls atomic.Int64
	increment := func(old []byte) ([]byte, error) {
		fnCalls.Add(1)
		var n uint64
		if old != nil {
			n = binary.BigEndian.Uint64(old)
		}
		return binary.BigEndian.AppendUint64(nil, n+1), nil
	}
	// disruptor breaks the rule that fn has no side effects on purpose: it
	// passes the snapshot pass, panics on its first run inside a batch, and
	// succeeds when bbolt reruns it alone.
	disruptor := func() func([]byte) ([]byte, error) {
		var calls atomic.Int32
		return func([]byte) ([]byte, error) {
			if calls.Add(1) == 2 {
				panic("disrupt the batch")
			}
			return []byte("d"), nil
		}
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				key := []byte{byte('a' + (g+r)%keys)}
				if _, err := db.Update(9, key, increment); err != nil {
					t.Error(err)
					return
				}
				if g%8 == 0 {
					if _, err := db.Update(10, []byte(fmt.Sprint(g, r)), disruptor()); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()

	var total uint64
	for k := range keys {
		key := string(rune('a' + k))
		v := mustGet(t, db, 9, key)
		n := binary.BigEndian.Uint64(v)
		if want := uint64(goroutines * rounds / keys); n != want {
			t.Errorf("counter %s = %d, want %d", key, n, want)
		}
		total += n
	}
	updates := int64(goroutines * rounds)
	t.Logf("%d increments, %d fn calls (%d beyond snapshot + batch, from retries)", total, fnCalls.Load(), fnCalls.Load()-2*updates)
}

func TestSecondOpenFailsWithErrLocked(t *testing.T) {
	dir := t.TempDir()
	first := openTestDB(t, dir, Options{})

	start := time.Now()
	second, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "another process holds the data dir") {
		t.Errorf("error does not explain itself: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("second Open took %v to fail", took)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	openTestDB(t, dir, Options{LockTimeout: 100 * time.Millisecond})
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	db := openTestDB(t, dir, Options{})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %v, want 0700", perm)
	}
	if want := filepath.Join(dir, "dynamo.db"); db.Path() != want {
		t.Errorf("Path = %q, want %q", db.Path(), want)
	}
	if _, err := Open(t.TempDir(), Options{MaxBatchSize: -1}); err == nil {
		t.Error("Open accepted a negative MaxBatchSize")
	}
}

func TestUseAfterClose(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	put(t, db, 1, "k", "v")
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	set := func([]byte) ([]byte, error) { return []byte("v"), nil }
	checks := map[string]error{
		"Close":         db.Close(),
		"DropPartition": db.DropPartition(1),
		"PutMeta":       db.PutMeta("m", nil),
		"Scan":          db.Scan(1, func(k, v []byte) error { return nil }),
	}
	_, checks["Get"] = db.Get(1, []byte("k"))
	_, checks["Update"] = db.Update(1, []byte("k"), set)
	checks["UpdateMany"] = db.UpdateMany(1, [][]byte{[]byte("k")}, func(int, []byte) ([]byte, error) { return []byte("v"), nil })
	_, checks["GetMeta"] = db.GetMeta("m")
	_, checks["Partitions"] = db.Partitions()
	_, checks["Stats"] = db.Stats()
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if db.Path() == "" {
		t.Error("Path after Close is empty")
	}
}

// TestCloseWhileWriting closes the DB under concurrent Updates: each must
// either succeed durably or fail with ErrClosed, and none may hang or panic.
func TestCloseWhileWriting(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex // guards written
		written []string
		started sync.WaitGroup
		wg      sync.WaitGroup
	)
	for w := range 16 {
		started.Add(1)
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%02d-%d", w, i)
				_, err := db.Update(0, []byte(key), func([]byte) ([]byte, error) { return []byte(key), nil })
				if i == 0 {
					started.Done()
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written = append(written, key)
				mu.Unlock()
			}
		})
	}
	started.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	db = openTestDB(t, dir, Options{})
	for _, key := range written {
		if v := mustGet(t, db, 0, key); string(v) != key {
			t.Fatalf("acknowledged key %q lost across Close: Get = %q", key, v)
		}
	}
}

// BenchmarkUpdateParallel shows group commit: writers share fsyncs, more
// of them the more writers there are.
func BenchmarkUpdateParallel(b *testing.B) {
	for _, writers := range []int{64, 512} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db := openTestDB(b, b.TempDir(), Options{})
			value := bytes.Repeat([]byte("v"), 1024)
			var next atomic.Uint64
			b.SetBytes(int64(len(value)))
			b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := next.Add(1)
					key := binary.BigEndian.AppendUint64(nil, n)
					if _, err := db.Update(uint32(n%16), key, func([]byte) ([]byte, error) { return value, nil }); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkUpdateSerial is a lone writer: one commit, one fsync per write.
func BenchmarkUpdateSerial(b *testing.B) {
	db := openTestDB(b, b.TempDir(), Options{})
	value := bytes.Repeat([]byte("v"), 1024)
	b.SetBytes(int64(len(value)))
	var n uint64
	for b.Loop() {
		n++
		if _, err := db.Update(uint32(n%16), binary.BigEndian.AppendUint64(nil, n), func([]byte) ([]byte, error) { return value, nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// keysOf returns n keys named prefix-000, prefix-001, ...
func keysOf(prefix string, n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%s-%03d", prefix, i)
	}
	return keys
}

func TestUpdateMany(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	put(t, db, 5, "new-001", "kept")
	put(t, db, 5, "new-002", "deleted")
	put(t, db, 6, "new-003", "other partition")

	keys := keysOf("new", 300)
	keys = append(keys, []byte("new-000")) // listed twice: sees its first write
	before := lastTxID(t, db)
	var calls []int
	err := db.UpdateMany(5, keys, func(i int, old []byte) ([]byte, error) {
		calls = append(calls, i)
		switch {
		case i == 1:
			return []byte("ignored"), ErrNoChange
		case i == 2:
			return nil, nil
		case i == 4:
			return old, nil // absent: stores nothing, and is no error
		case i == len(keys)-1:
			return append(bytes.Clone(old), "+again"...), nil
		case old != nil:
			return nil, fmt.Errorf("key %d: old = %q, want absent", i, old)
		}
		return append([]byte("v:"), keys[i]...), nil
	})
	if err != nil {
		t.Fatalf("UpdateMany: %v", err)
	}
	if len(calls) != len(keys) {
		t.Fatalf("fn called %d times for %d keys", len(calls), len(keys))
	}
	for i, got := range calls {
		if got != i {
			t.Fatalf("call %d was for key %d: want each key once, in order", i, got)
		}
	}
	if after := lastTxID(t, db); after != before+1 {
		t.Fatalf("UpdateMany committed %d transactions, want 1", after-before)
	}
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTestDB(t, dir, Options{})
	for i, key := range keys[:300] {
		want := "v:" + string(key)
		switch i {
		case 0:
			want += "+again"
		case 1:
			want = "kept"
		case 2, 4:
			want = ""
		}
		v := mustGet(t, db, 5, string(key))
		if want == "" && v != nil || want != "" && string(v) != want {
			t.Errorf("after reopen: Get(5, %q) = %q, want %q", key, v, want)
		}
	}
	if v := mustGet(t, db, 6, "new-003"); string(v) != "other partition" {
		t.Errorf("key of another partition: Get = %q", v)
	}
	if s, _ := db.Stats(); s.Keys != 300-2+1 {
		t.Errorf("Stats.Keys = %d, want %d", s.Keys, 300-2+1)
	}
}

func TestUpdateManyWritesAllOrNothing(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	put(t, db, 1, "k-000", "old")
	before := lastTxID(t, db)
	keys := keysOf("k", 100)
	set := func(int, []byte) ([]byte, error) { return []byte("new"), nil }

	boom := errors.New("boom")
	calls := 0
	err := db.UpdateMany(1, keys, func(i int, old []byte) ([]byte, error) {
		calls++
		if i == 50 {
			return []byte("x"), boom
		}
		return []byte("new"), nil
	})
	if err != boom {
		t.Fatalf("fn error: UpdateMany = %v, want %v unwrapped", err, boom)
	}
	if calls != 51 {
		t.Errorf("fn called %d times, want 51: the error stops the call", calls)
	}
	// Into a partition that does not exist yet: not even its bucket stays.
	if err := db.UpdateMany(2, keys, func(i int, old []byte) ([]byte, error) {
		if i == len(keys)-1 {
			return nil, boom
		}
		return []byte("new"), nil
	}); err != boom {
		t.Fatalf("fn error in new partition: UpdateMany = %v, want %v", err, boom)
	}

	bad := map[string]struct {
		key  []byte
		want error
	}{
		"empty key": {nil, ErrEmptyKey},
		"huge key":  {bytes.Repeat([]byte("k"), MaxKeySize+1), ErrKeyTooLarge},
	}
	for name, tc := range bad {
		withBad := slices.Concat(keys[:10], [][]byte{tc.key}, keys[10:])
		err := db.UpdateMany(1, withBad, func(int, []byte) ([]byte, error) {
			t.Errorf("%s: fn called", name)
			return nil, nil
		})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "key 10") {
			t.Errorf("%s: UpdateMany = %v, want %v naming key 10", name, err, tc.want)
		}
	}

	// Nothing to do: no transaction commits, so no fsync is paid.
	noChange := func(int, []byte) ([]byte, error) { return nil, ErrNoChange }
	if err := db.UpdateMany(1, keys, noChange); err != nil {
		t.Errorf("all ErrNoChange: UpdateMany = %v", err)
	}
	deleteAbsent := func(int, []byte) ([]byte, error) { return nil, nil }
	if err := db.UpdateMany(1, keys[1:], deleteAbsent); err != nil {
		t.Errorf("deleting absent keys: UpdateMany = %v", err)
	}
	for _, empty := range [][][]byte{nil, {}} {
		if err := db.UpdateMany(1, empty, set); err != nil {
			t.Errorf("UpdateMany(%#v) = %v, want nil", empty, err)
		}
	}

	if after := lastTxID(t, db); after != before {
		t.Fatalf("write transactions committed: tx id %d -> %d", before, after)
	}
	if v := mustGet(t, db, 1, "k-000"); string(v) != "old" {
		t.Errorf("Get(k-000) = %q, want old", v)
	}
	if s, _ := db.Stats(); s.Keys != 1 {
		t.Errorf("Stats.Keys = %d, want 1", s.Keys)
	}
	if parts, _ := db.Partitions(); !slices.Equal(parts, []uint32{1}) {
		t.Errorf("Partitions = %v, want [1]", parts)
	}
}

// BenchmarkHandoffPage compares storing one handoff page of 256 keys of 1
// KiB with an Update per key, as one writer does, against one UpdateMany.
func BenchmarkHandoffPage(b *testing.B) {
	const keys, valueSize = 256, 1024
	value := bytes.Repeat([]byte("v"), valueSize)
	b.Run("Update", func(b *testing.B) {
		db := openTestDB(b, b.TempDir(), Options{})
		b.SetBytes(keys * valueSize)
		page := 0
		for b.Loop() {
			page++
			for _, key := range keysOf(fmt.Sprint(page), keys) {
				if _, err := db.Update(0, key, func([]byte) ([]byte, error) { return value, nil }); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("UpdateMany", func(b *testing.B) {
		db := openTestDB(b, b.TempDir(), Options{})
		b.SetBytes(keys * valueSize)
		page := 0
		for b.Loop() {
			page++
			err := db.UpdateMany(0, keysOf(fmt.Sprint(page), keys), func(int, []byte) ([]byte, error) { return value, nil })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
