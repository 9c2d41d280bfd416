package store

import (
	"bytes"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzHintRecord reads stored hint records (seq, then the caller's value)
// as they come back from the file: short ones are errors, and the others
// split into a seq and a value that join back into the record.
func FuzzHintRecord(f *testing.F) {
	f.Add(append(seqName(1), "value"...))
	f.Add(seqName(1<<64 - 1))
	f.Add(append(seqName(42), 1, 0, 0, 0, 0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 7})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rec []byte) {
		seq, value, err := splitHintValue(rec)
		if len(rec) < 8 {
			if err == nil {
				t.Fatalf("a %d-byte record split into %d, %x", len(rec), seq, value)
			}
			return
		}
		if err != nil || value == nil || cap(value) != len(value) {
			t.Fatalf("%x: %d, %x (cap %d), %v", rec, seq, value, cap(value), err)
		}
		if joined := append(seqName(seq), value...); !bytes.Equal(joined, rec) {
			t.Fatalf("%x split into %d, %x", rec, seq, value)
		}
	})
}

// FuzzHintRef reads hintseq's references to hints: what is accepted writes
// back as the same bytes, and every valid hint address survives the trip.
func FuzzHintRef(f *testing.F) {
	f.Add(hintRef("node-b", 7, []byte("key")), "node-b", uint32(7), []byte("key"))
	f.Add(hintRef(string(bytes.Repeat([]byte{'t'}, MaxTargetSize)), 1<<32-1, []byte{0}), "", uint32(0), []byte{})
	f.Add([]byte{3, 'a', 'b'}, "a\x00b", uint32(1), []byte("/k//"))
	f.Add([]byte{0, 0, 0, 0, 0, 'k'}, "x", uint32(2), bytes.Repeat([]byte{'k'}, MaxKeySize+1))
	f.Fuzz(func(t *testing.T, ref []byte, target string, partition uint32, key []byte) {
		in := bytes.Clone(ref)
		h, err := parseHintRef(ref)
		if err == nil {
			if back := hintRef(h.Target, h.Partition, h.Key); !bytes.Equal(back, in) {
				t.Fatalf("%x parsed as %+v, which writes as %x", in, h, back)
			}
			clear(ref)
			if !bytes.Equal(hintRef(h.Target, h.Partition, h.Key), in) {
				t.Fatalf("the parsed ref %+v aliases its input", h)
			}
		}

		if checkHintAddress(target, key) != nil {
			return
		}
		h, err = parseHintRef(hintRef(target, partition, key))
		if err != nil || h.Target != target || h.Partition != partition || !bytes.Equal(h.Key, key) {
			t.Fatalf("(%q, %d, %x) came back as %+v, %v", target, partition, key, h, err)
		}
	})
}

// A hint record too short to hold its seq is reported by every method that
// reads it, instead of panicking.
func TestCorruptHintRecord(t *testing.T) {
	db := openTestDB(t, t.TempDir(), Options{})
	if _, err := db.UpdateHint("node-b", 3, []byte("k"), func([]byte) ([]byte, error) { return []byte("v"), nil }); err != nil {
		t.Fatal(err)
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHints).Bucket([]byte("node-b")).Bucket(partitionName(3)).Put([]byte("k"), []byte{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Hints("node-b", nil, 10); err == nil {
		t.Error("Hints read a corrupt record")
	}
	if _, err := db.GetHint("node-b", 3, []byte("k")); err == nil {
		t.Error("GetHint read a corrupt record")
	}
	if _, err := db.DeleteHint("node-b", 3, []byte("k"), 1); err == nil {
		t.Error("DeleteHint read a corrupt record")
	}
	if _, err := db.UpdateHint("node-b", 3, []byte("k"), func([]byte) ([]byte, error) { return []byte("w"), nil }); err == nil {
		t.Error("UpdateHint read a corrupt record")
	}
	// Closed here: the layout check of openTestDB's cleanup would refuse
	// the record this test corrupted on purpose.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
