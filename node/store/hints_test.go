package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// checkHints verifies the hint layout and invariants doc.go states: hints/
// holds non-empty target buckets of non-empty 4-byte partition buckets of
// seq-prefixed values; every hint has the one hintseq entry that points back
// at it and hintseq holds nothing else; the counters match the hints.
func checkHints(tb testing.TB, tx *bolt.Tx) {
	tb.Helper()
	hints, seqs := tx.Bucket(bucketHints), tx.Bucket(bucketHintSeq)
	seen := make(map[uint64]bool)
	total := 0
	err := hints.ForEach(func(target, v []byte) error {
		if v != nil || len(target) == 0 || len(target) > MaxTargetSize {
			tb.Errorf("hints holds %q, want only target buckets of 1 to %d bytes", target, MaxTargetSize)
			return nil
		}
		tgt := hints.Bucket(target)
		count := 0
		err := tgt.ForEach(func(pname, v []byte) error {
			if v != nil || len(pname) != 4 {
				tb.Errorf("hints/%s holds %x, want only 4-byte partition buckets", target, pname)
				return nil
			}
			partition := binary.BigEndian.Uint32(pname)
			n := 0
			err := tgt.Bucket(pname).ForEach(func(key, v []byte) error {
				n++
				where := fmt.Sprintf("hint %s/%d/%q", target, partition, key)
				if v == nil || len(v) < 8 {
					tb.Errorf("%s: value %x, want seq + value", where, v)
					return nil
				}
				seq := binary.BigEndian.Uint64(v)
				if seen[seq] {
					tb.Errorf("%s: seq %d used by another hint too", where, seq)
				}
				seen[seq] = true
				ref, err := parseHintRef(seqs.Get(seqName(seq)))
				if err != nil || ref.Target != string(target) || ref.Partition != partition || !bytes.Equal(ref.Key, key) {
					tb.Errorf("%s: hintseq[%d] = %+v, %v; want a ref back to it", where, seq, ref, err)
				}
				return nil
			})
			if n == 0 {
				tb.Errorf("hints/%s/%d is an empty bucket", target, partition)
			}
			count += n
			return err
		})
		if got := tgt.Sequence(); got != uint64(count) {
			tb.Errorf("hints/%s counter = %d, holds %d hints", target, got, count)
		}
		if count == 0 {
			tb.Errorf("hints/%s is an empty bucket", target)
		}
		total += count
		return err
	})
	if err != nil {
		tb.Errorf("walking hints: %v", err)
	}
	if got := hints.Sequence(); got != uint64(total) {
		tb.Errorf("hints total counter = %d, holds %d hints", got, total)
	}

	entries := 0
	err = seqs.ForEach(func(k, v []byte) error {
		entries++
		if v == nil || len(k) != 8 {
			tb.Errorf("hintseq holds %x -> %x, want only 8-byte seqs -> refs", k, v)
		} else if seq := binary.BigEndian.Uint64(k); !seen[seq] || seq > seqs.Sequence() {
			tb.Errorf("hintseq[%d] (last seq given out %d) belongs to no hint", seq, seqs.Sequence())
		}
		return nil
	})
	if err != nil {
		tb.Errorf("walking hintseq: %v", err)
	}
	if entries != total {
		tb.Errorf("hintseq holds %d entries for %d hints", entries, total)
	}
}

func setTo(value string) func([]byte) ([]byte, error) {
	return func([]byte) ([]byte, error) { return []byte(value), nil }
}

func putHint(tb testing.TB, db *DB, target string, partition uint32, key, value string) []Hint {
	tb.Helper()
	dropped, err := db.UpdateHint(target, partition, []byte(key), setTo(value))
	if err != nil {
		tb.Fatalf("UpdateHint(%q, %d, %q): %v", target, partition, key, err)
	}
	return dropped
}

func mustGetHint(tb testing.TB, db *DB, target string, partition uint32, key string) []byte {
	tb.Helper()
	v, err := db.GetHint(target, partition, []byte(key))
	if err != nil {
		tb.Fatalf("GetHint(%q, %d, %q): %v", target, partition, key, err)
	}
	return v
}

// allHints pages through target's hints, a few at a time.
func allHints(tb testing.TB, db *DB, target string) []Hint {
	tb.Helper()
	var all []Hint
	var after []byte
	for {
		page, next, err := db.Hints(target, after, 3)
		if err != nil {
			tb.Fatalf("Hints(%q): %v", target, err)
		}
		all = append(all, page...)
		if next == nil {
			return all
		}
		after = next
	}
}

// seqOf returns the hint's current Seq, failing if it is absent.
func seqOf(tb testing.TB, db *DB, target string, partition uint32, key string) uint64 {
	tb.Helper()
	for _, h := range allHints(tb, db, target) {
		if h.Partition == partition && string(h.Key) == key {
			return h.Seq
		}
	}
	tb.Fatalf("no hint %s/%d/%q", target, partition, key)
	return 0
}

func mustCounts(tb testing.TB, db *DB, want map[string]int) {
	tb.Helper()
	got, err := db.HintCounts()
	if err != nil || !maps.Equal(got, want) {
		tb.Fatalf("HintCounts = %v, %v; want %v", got, err, want)
	}
}

func TestHintRoundTrip(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})

	if v := mustGetHint(t, db, "node-b", 1, "k"); v != nil {
		t.Fatalf("absent hint: GetHint = %q, want nil", v)
	}
	if d := putHint(t, db, "node-b", 1, "k", "v1"); d != nil {
		t.Fatalf("dropped %v under the default bound", d)
	}
	if v := mustGetHint(t, db, "node-b", 1, "k"); string(v) != "v1" {
		t.Fatalf("GetHint = %q, want v1", v)
	}
	// Hints are kept apart from the node's own objects, and per target.
	if v := mustGet(t, db, 1, "k"); v != nil {
		t.Fatalf("hint visible as an object: Get = %q", v)
	}
	if v := mustGetHint(t, db, "node-c", 1, "k"); v != nil {
		t.Fatalf("hint for node-b visible for node-c: %q", v)
	}

	_, err := db.UpdateHint("node-b", 1, []byte("k"), func(old []byte) ([]byte, error) {
		return append(bytes.Clone(old), "+v2"...), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v := mustGetHint(t, db, "node-b", 1, "k")
	if string(v) != "v1+v2" {
		t.Fatalf("read-modify-write: GetHint = %q, want v1+v2", v)
	}
	v[0] = 'X'
	if v := mustGetHint(t, db, "node-b", 1, "k"); string(v) != "v1+v2" {
		t.Fatalf("GetHint returned a shared slice: now %q", v)
	}

	// An empty value is stored, and distinct from absent.
	putHint(t, db, "node-b", 2, "empty", "")
	if v := mustGetHint(t, db, "node-b", 2, "empty"); v == nil || len(v) != 0 {
		t.Fatalf("empty value: GetHint = %#v, want non-nil empty", v)
	}
	hints := allHints(t, db, "node-b")
	if len(hints) != 2 || hints[0].Target != "node-b" || hints[0].Partition != 1 || string(hints[0].Key) != "k" ||
		string(hints[0].Value) != "v1+v2" || hints[1].Value == nil || hints[0].Seq == 0 || hints[1].Seq <= hints[0].Seq {
		t.Fatalf("Hints = %+v", hints)
	}
	mustCounts(t, db, map[string]int{"node-b": 2})

	// A nil result deletes, and the target goes with its last hint.
	remove := func([]byte) ([]byte, error) { return nil, nil }
	if _, err := db.UpdateHint("node-b", 1, []byte("k"), remove); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateHint("node-b", 2, []byte("empty"), remove); err != nil {
		t.Fatal(err)
	}
	if v := mustGetHint(t, db, "node-b", 1, "k"); v != nil {
		t.Fatalf("after delete: GetHint = %q, want nil", v)
	}
	if targets, err := db.HintTargets(); err != nil || len(targets) != 0 {
		t.Fatalf("HintTargets = %q, %v; want none", targets, err)
	}
	mustCounts(t, db, map[string]int{})
}

func TestHintLimits(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	set := setTo("v")

	if _, err := db.UpdateHint("", 0, []byte("k"), set); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("UpdateHint empty target = %v, want ErrEmptyKey", err)
	}
	long := strings.Repeat("t", MaxTargetSize+1)
	if _, err := db.UpdateHint(long, 0, []byte("k"), set); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("UpdateHint target of %d bytes = %v, want ErrKeyTooLarge", len(long), err)
	}
	if _, err := db.GetHint(long, 0, []byte("k")); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("GetHint long target = %v, want ErrKeyTooLarge", err)
	}
	if _, _, err := db.Hints("", nil, 1); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Hints empty target = %v, want ErrEmptyKey", err)
	}
	if _, err := db.DeleteHint("", 0, []byte("k"), 1); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("DeleteHint empty target = %v, want ErrEmptyKey", err)
	}
	if _, err := db.UpdateHint("t", 0, nil, set); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("UpdateHint empty key = %v, want ErrEmptyKey", err)
	}
	huge := bytes.Repeat([]byte("k"), MaxKeySize+1)
	if _, err := db.UpdateHint("t", 0, huge, set); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("UpdateHint huge key = %v, want ErrKeyTooLarge", err)
	}

	// Every key Update accepts can be hinted, with the longest target.
	target := long[:MaxTargetSize]
	largest := huge[:MaxKeySize]
	if _, err := db.UpdateHint(target, math.MaxUint32, largest, set); err != nil {
		t.Fatalf("UpdateHint with key of MaxKeySize and target of MaxTargetSize: %v", err)
	}
	if v, err := db.GetHint(target, math.MaxUint32, largest); err != nil || string(v) != "v" {
		t.Fatalf("GetHint = %q, %v", v, err)
	}
	hints, next, err := db.Hints(target, nil, 1)
	if err != nil || next != nil || len(hints) != 1 || !bytes.Equal(hints[0].Key, largest) {
		t.Fatalf("Hints = %d hints, next %x, %v", len(hints), next, err)
	}

	if _, _, err := db.Hints(target, nil, 0); err == nil {
		t.Error("Hints accepted limit 0")
	}
	if _, _, err := db.Hints(target, []byte{0, 0}, 1); err == nil {
		t.Error("Hints accepted a 2-byte cursor")
	}
	if _, err := Open(t.TempDir(), Options{MaxHints: -1}); err == nil {
		t.Error("Open accepted a negative MaxHints")
	}
}

func TestDeleteHintOnlyDeletesTheVersionRead(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	putHint(t, db, "b", 3, "k", "v1")
	read := seqOf(t, db, "b", 3, "k")

	// The hint is rewritten between reading and delivering it.
	putHint(t, db, "b", 3, "k", "v2")
	current := seqOf(t, db, "b", 3, "k")
	if current <= read {
		t.Fatalf("rewrite: Seq %d -> %d, want it to grow", read, current)
	}
	before := lastTxID(t, db)
	if ok, err := db.DeleteHint("b", 3, []byte("k"), read); ok || err != nil {
		t.Fatalf("DeleteHint with stale seq = %v, %v; want false, nil", ok, err)
	}
	if after := lastTxID(t, db); after != before {
		t.Errorf("DeleteHint with stale seq committed a write transaction")
	}
	if v := mustGetHint(t, db, "b", 3, "k"); string(v) != "v2" {
		t.Fatalf("after stale DeleteHint: GetHint = %q, want v2", v)
	}

	if ok, err := db.DeleteHint("b", 3, []byte("k"), current); !ok || err != nil {
		t.Fatalf("DeleteHint with current seq = %v, %v; want true, nil", ok, err)
	}
	if v := mustGetHint(t, db, "b", 3, "k"); v != nil {
		t.Fatalf("after DeleteHint: GetHint = %q, want nil", v)
	}
	if ok, err := db.DeleteHint("b", 3, []byte("k"), current); ok || err != nil {
		t.Fatalf("DeleteHint again = %v, %v; want false, nil", ok, err)
	}

	// A deleted and rewritten hint never gets an old seq back.
	putHint(t, db, "b", 3, "k", "v3")
	if s := seqOf(t, db, "b", 3, "k"); s <= current {
		t.Fatalf("recreated hint: Seq %d, want above %d", s, current)
	}
	if ok, _ := db.DeleteHint("b", 3, []byte("k"), current); ok {
		t.Fatal("DeleteHint deleted a recreated hint by the seq of its predecessor")
	}
	mustCounts(t, db, map[string]int{"b": 1})
}

func TestUpdateHintThatWritesNothing(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{MaxHints: 1})
	putHint(t, db, "b", 3, "k", "v")
	seq := seqOf(t, db, "b", 3, "k")
	before := lastTxID(t, db)

	dropped, err := db.UpdateHint("b", 3, []byte("k"), func([]byte) ([]byte, error) { return []byte("ignored"), ErrNoChange })
	if err != nil || dropped != nil {
		t.Fatalf("ErrNoChange: UpdateHint = %v, %v; want nil, nil", dropped, err)
	}
	if _, err := db.UpdateHint("b", 3, []byte("absent"), func([]byte) ([]byte, error) { return nil, fmt.Errorf("wrapped: %w", ErrNoChange) }); err != nil {
		t.Fatalf("ErrNoChange on absent hint: %v", err)
	}
	if _, err := db.UpdateHint("b", 3, []byte("absent"), func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatalf("deleting absent hint: %v", err)
	}
	boom := errors.New("boom")
	if _, err := db.UpdateHint("b", 3, []byte("k"), func([]byte) ([]byte, error) { return []byte("x"), boom }); err != boom {
		t.Fatalf("fn error: UpdateHint error = %v, want %v unwrapped", err, boom)
	}

	if after := lastTxID(t, db); after != before {
		t.Fatalf("write transactions committed: tx id %d -> %d", before, after)
	}
	if v := mustGetHint(t, db, "b", 3, "k"); string(v) != "v" {
		t.Fatalf("GetHint = %q, want v", v)
	}
	if s := seqOf(t, db, "b", 3, "k"); s != seq {
		t.Fatalf("Seq %d -> %d without a write", seq, s)
	}
}

func TestHintsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{})
	want := make(map[string][]Hint)
	for i := range 30 {
		target := fmt.Sprintf("node-%d", i%3)
		putHint(t, db, target, uint32(i%4), fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	targets, _ := db.HintTargets()
	for _, target := range targets {
		want[target] = allHints(t, db, target)
	}
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTestDB(t, dir, Options{})
	mustCounts(t, db, map[string]int{"node-0": 10, "node-1": 10, "node-2": 10})
	var newest uint64
	for target, hints := range want {
		got := allHints(t, db, target)
		if !slices.EqualFunc(got, hints, equalHint) {
			t.Fatalf("after reopen: Hints(%q) = %+v, want %+v", target, got, hints)
		}
		for _, h := range got {
			newest = max(newest, h.Seq)
		}
	}
	// The seq counter survives too: a new write is newer than all of them.
	putHint(t, db, "node-0", 0, "fresh", "v")
	if s := seqOf(t, db, "node-0", 0, "fresh"); s <= newest {
		t.Fatalf("first hint after reopen: Seq %d, want above %d", s, newest)
	}
}

func equalHint(a, b Hint) bool {
	return a.Target == b.Target && a.Partition == b.Partition && bytes.Equal(a.Key, b.Key) &&
		bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil) && a.Seq == b.Seq
}

func TestMaxHintsDropsTheOldest(t *testing.T) {
	const maxHints, extra = 10, 4
	dir := t.TempDir()
	db := openTestDB(t, dir, Options{MaxHints: maxHints})

	// Fill to the bound across three targets, oldest first.
	type addr struct {
		target    string
		partition uint32
		key       string
	}
	var order []addr
	for i := range maxHints {
		a := addr{fmt.Sprintf("node-%d", i%3), uint32(i % 2), fmt.Sprintf("k%02d", i)}
		if d := putHint(t, db, a.target, a.partition, a.key, "v"); d != nil {
			t.Fatalf("hint %d of %d dropped %+v", i+1, maxHints, d)
		}
		order = append(order, a)
	}
	// Rewriting the oldest makes it the newest, so it is not dropped next.
	putHint(t, db, order[0].target, order[0].partition, order[0].key, "v2")
	order = append(order[1:], order[0])

	var dropped []Hint
	for i := range extra {
		a := addr{fmt.Sprintf("node-%d", i%2), 7, fmt.Sprintf("extra%d", i)}
		oldestSeq := seqOf(t, db, order[0].target, order[0].partition, order[0].key)
		d := putHint(t, db, a.target, a.partition, a.key, "v")
		if len(d) != 1 {
			t.Fatalf("extra hint %d dropped %+v, want exactly one", i, d)
		}
		if want := (Hint{Target: order[0].target, Partition: order[0].partition, Key: []byte(order[0].key), Seq: oldestSeq}); !equalHint(d[0], want) {
			t.Fatalf("extra hint %d dropped %+v, want the oldest %+v", i, d[0], want)
		}
		dropped = append(dropped, d...)
		order = append(order[1:], a)
	}

	for _, h := range dropped {
		if v := mustGetHint(t, db, h.Target, h.Partition, string(h.Key)); v != nil {
			t.Errorf("dropped hint %s/%d/%s still there", h.Target, h.Partition, h.Key)
		}
	}
	wantCounts := make(map[string]int)
	for _, a := range order {
		wantCounts[a.target]++
		if v := mustGetHint(t, db, a.target, a.partition, a.key); v == nil {
			t.Errorf("kept hint %+v is gone", a)
		}
	}
	mustCounts(t, db, wantCounts)
	if targets, _ := db.HintTargets(); len(targets) != len(wantCounts) {
		t.Errorf("HintTargets = %q, want the targets of %v", targets, wantCounts)
	}

	// A bound lowered across a restart drops the whole excess at the next write.
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTestDB(t, dir, Options{MaxHints: 3})
	d := putHint(t, db, "node-9", 0, "k", "v")
	if len(d) != maxHints+1-3 {
		t.Fatalf("after lowering MaxHints to 3: dropped %d, want %d", len(d), maxHints+1-3)
	}
	for i, h := range d {
		if a := order[i]; h.Target != a.target || h.Partition != a.partition || string(h.Key) != a.key || (i > 0 && h.Seq <= d[i-1].Seq) {
			t.Fatalf("dropped[%d] = %+v, want %+v, oldest first", i, h, a)
		}
	}
	counts, _ := db.HintCounts()
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != 3 || counts["node-9"] != 1 {
		t.Fatalf("after lowering MaxHints to 3: HintCounts = %v", counts)
	}
}

func TestHintsPaging(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	// Partition numbers whose little-endian order would differ, keys of
	// different lengths, all written out of order. Each hint's value is its
	// address as "partition/key".
	type addr struct {
		partition uint32
		key       string
	}
	var addrs []addr
	var want []string
	for _, p := range []uint32{0, 1, 256, 1 << 24, math.MaxUint32} {
		for _, k := range []string{"a", "b", "ba", "c"} {
			addrs = append(addrs, addr{p, k})
			want = append(want, fmt.Sprintf("%d/%s", p, k))
		}
	}
	for _, i := range []int{7, 3, 19, 0, 12, 5, 1, 18, 9, 14, 2, 11, 16, 4, 10, 6, 13, 8, 17, 15} {
		putHint(t, db, "b", addrs[i].partition, addrs[i].key, want[i])
	}
	putHint(t, db, "a", 1, "a", "other target")
	putHint(t, db, "c", 1, "a", "other target")

	for _, limit := range []int{1, 3, 4, 7, 20, 1000} {
		var got []string
		var after []byte
		pages := 0
		for {
			hints, next, err := db.Hints("b", after, limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(hints) > limit || (next != nil && len(hints) != limit) {
				t.Fatalf("limit %d: page of %d hints, next %x", limit, len(hints), next)
			}
			for _, h := range hints {
				s := fmt.Sprintf("%d/%s", h.Partition, h.Key)
				if string(h.Value) != s || h.Target != "b" {
					t.Fatalf("limit %d: hint %+v", limit, h)
				}
				got = append(got, s)
			}
			if next == nil {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: paged %q, want %q", limit, got, want)
		}
		// No empty last page when the hints divide evenly into pages.
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}

	// A cursor still works after the hint it names is delivered and deleted.
	hints, next, err := db.Hints("b", nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	last := hints[len(hints)-1]
	if ok, err := db.DeleteHint("b", last.Partition, last.Key, last.Seq); !ok || err != nil {
		t.Fatalf("DeleteHint = %v, %v", ok, err)
	}
	hints, _, err = db.Hints("b", next, 1)
	if err != nil || len(hints) != 1 || fmt.Sprintf("%d/%s", hints[0].Partition, hints[0].Key) != want[6] {
		t.Fatalf("page after a deleted cursor hint = %+v, %v; want %s", hints, err, want[6])
	}

	if hints, next, err := db.Hints("nobody", nil, 10); hints != nil || next != nil || err != nil {
		t.Fatalf("Hints for a target without hints = %v, %x, %v", hints, next, err)
	}
}

func TestHintTargets(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	for _, target := range []string{"node-c", "node-a", "node-b", "node-a"} {
		putHint(t, db, target, 0, "k-"+target, "v")
		putHint(t, db, target, 1, "k", "v")
	}
	targets, err := db.HintTargets()
	if want := []string{"node-a", "node-b", "node-c"}; err != nil || !slices.Equal(targets, want) {
		t.Fatalf("HintTargets = %q, %v; want %q", targets, err, want)
	}
	mustCounts(t, db, map[string]int{"node-a": 2, "node-b": 2, "node-c": 2})

	// node-b loses its hints one by delivery, one by a nil update.
	if ok, err := db.DeleteHint("node-b", 0, []byte("k-node-b"), seqOf(t, db, "node-b", 0, "k-node-b")); !ok || err != nil {
		t.Fatalf("DeleteHint = %v, %v", ok, err)
	}
	mustCounts(t, db, map[string]int{"node-a": 2, "node-b": 1, "node-c": 2})
	if _, err := db.UpdateHint("node-b", 1, []byte("k"), func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	targets, _ = db.HintTargets()
	if want := []string{"node-a", "node-c"}; !slices.Equal(targets, want) {
		t.Fatalf("after node-b's last hint went: HintTargets = %q, want %q", targets, want)
	}
	mustCounts(t, db, map[string]int{"node-a": 2, "node-c": 2})
}

// TestConcurrentHintMerges runs read-modify-write counters on overlapping
// hints from many goroutines; the counts must come out exact.
func TestConcurrentHintMerges(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	const goroutines, rounds, targets, keys = 48, 20, 3, 4

	increment := func(old []byte) ([]byte, error) {
		var n uint64
		if old != nil {
			n = binary.BigEndian.Uint64(old)
		}
		return binary.BigEndian.AppendUint64(nil, n+1), nil
	}
	type addr struct {
		target    string
		partition uint32
		key       string
	}
	// Goroutine g's round r increments the hint at hit(g, r).
	hit := func(g, r int) addr {
		k := (g + r) % keys
		return addr{fmt.Sprintf("node-%d", g%targets), uint32(k % 2), string(rune('a' + k))}
	}
	want := make(map[addr]uint64)
	var wg sync.WaitGroup
	for g := range goroutines {
		for r := range rounds {
			want[hit(g, r)]++
		}
		wg.Go(func() {
			for r := range rounds {
				a := hit(g, r)
				if _, err := db.UpdateHint(a.target, a.partition, []byte(a.key), increment); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	wantCounts := make(map[string]int)
	for a, n := range want {
		v := mustGetHint(t, db, a.target, a.partition, a.key)
		if got := binary.BigEndian.Uint64(v); got != n {
			t.Errorf("hint counter %+v = %d, want %d", a, got, n)
		}
		wantCounts[a.target]++
	}
	mustCounts(t, db, wantCounts)
}

// TestConcurrentHintChurn writes, rewrites, delivers and drops hints from
// many goroutines at once under a small bound; the books must balance and
// mustCheck (run at cleanup) must pass. Some object Updates panic once
// inside their batch, so bbolt reruns the hint writes that shared it.
func TestConcurrentHintChurn(t *testing.T) {
	const maxHints, goroutines, rounds = 40, 32, 30
	db := openTestDB(t, t.TempDir(), Options{MaxHints: maxHints})

	// disruptor passes the snapshot pass, panics on its first run inside a
	// batch, and succeeds when bbolt reruns it alone.
	disruptor := func() func([]byte) ([]byte, error) {
		var calls atomic.Int32
		return func([]byte) ([]byte, error) {
			if calls.Add(1) == 2 {
				panic("disrupt the batch")
			}
			return []byte("d"), nil
		}
	}

	var created, droppedN, deleted atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				target := fmt.Sprintf("node-%d", (g+r)%5)
				key := []byte(fmt.Sprintf("k%d", (g*7+r)%60))
				var isNew bool // set by every run of fn: the last run is the one committed
				dropped, err := db.UpdateHint(target, uint32(r%3), key, func(old []byte) ([]byte, error) {
					isNew = old == nil
					return append(bytes.Clone(old), byte(g)), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				if isNew {
					created.Add(1)
				}
				droppedN.Add(int64(len(dropped)))
				for _, h := range dropped {
					if h.Value != nil || h.Seq == 0 || h.Target == "" || len(h.Key) == 0 {
						t.Errorf("dropped hint %+v", h)
					}
				}
				if g%4 == 0 {
					if _, err := db.Update(0, []byte(fmt.Sprint(g, r)), disruptor()); err != nil {
						t.Error(err)
						return
					}
				}
				if r%4 == 3 {
					hints, _, err := db.Hints(target, nil, 2)
					if err != nil {
						t.Error(err)
						return
					}
					for _, h := range hints {
						ok, err := db.DeleteHint(h.Target, h.Partition, h.Key, h.Seq)
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							deleted.Add(1)
						}
					}
				}
			}
		})
	}
	wg.Wait()

	counts, err := db.HintCounts()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for target, n := range counts {
		if got := len(allHints(t, db, target)); got != n {
			t.Errorf("HintCounts[%s] = %d, Hints lists %d", target, n, got)
		}
		total += n
	}
	if want := created.Load() - droppedN.Load() - deleted.Load(); int64(total) != want {
		t.Errorf("%d hints stored, want %d created - %d dropped - %d delivered = %d",
			total, created.Load(), droppedN.Load(), deleted.Load(), want)
	}
	if total > maxHints {
		t.Errorf("%d hints stored, bound %d", total, maxHints)
	}
	t.Logf("%d created, %d dropped, %d delivered, %d left", created.Load(), droppedN.Load(), deleted.Load(), total)
}

func TestHintsUseAfterClose(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	putHint(t, db, "b", 1, "k", "v")
	mustCheck(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	checks := make(map[string]error)
	_, checks["UpdateHint"] = db.UpdateHint("b", 1, []byte("k"), setTo("v"))
	_, checks["GetHint"] = db.GetHint("b", 1, []byte("k"))
	_, checks["HintTargets"] = db.HintTargets()
	_, _, checks["Hints"] = db.Hints("b", nil, 1)
	_, checks["DeleteHint"] = db.DeleteHint("b", 1, []byte("k"), 1)
	_, checks["HintCounts"] = db.HintCounts()
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}
