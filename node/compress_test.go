package node

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// Value kinds the tests store: JSON text, a repeated byte pattern, and
// random (incompressible) bytes.
const (
	kindJSON       = "json"
	kindRepetitive = "repetitive"
	kindRandom     = "random"
)

// valueOf returns n bytes of kind, the same for the same seed.
func valueOf(kind string, n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	switch kind {
	case kindJSON:
		var buf []byte
		for len(buf) < n {
			buf = append(buf, jsonProfile(r)...)
		}
		return buf[:n]
	case kindRepetitive:
		return bytes.Repeat([]byte("abcdefgh"), n/8+1)[:n]
	default:
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
}

// objectOf is a live object of one sibling holding value, as a coordinator
// would write it.
func objectOf(value []byte, contentType string) *version.Object {
	obj, _ := (*version.Object)(nil).Write(0x1234_5678_9abc_def0, nil, value, contentType,
		time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC))
	return obj
}

// roundTrip encodes obj as a record, checks it decodes to the same object
// (byte for byte), and returns the record.
func roundTrip(t *testing.T, obj *version.Object) []byte {
	t.Helper()
	plain := obj.Marshal()
	rec := encodeRecord(obj)
	got, err := decodeRecord(rec)
	if err != nil {
		t.Fatalf("decoding the record of a %d-byte object: %v", len(plain), err)
	}
	if !bytes.Equal(got.Marshal(), plain) {
		t.Fatalf("a %d-byte object came back different from its %d-byte record", len(plain), len(rec))
	}
	if recordPlainLen(rec) != len(plain) {
		t.Fatalf("recordPlainLen = %d, want %d", recordPlainLen(rec), len(plain))
	}
	if rec[0] == recordS2 && len(rec) > len(plain)-len(plain)/compressMinGain {
		t.Fatalf("kept a compressed record of %d bytes for a %d-byte object: under 12.5%% saved", len(rec), len(plain))
	}
	return rec
}

func TestRecordRoundTripEverySizeAndKind(t *testing.T) {
	// overhead is what a one-sibling object adds to a value of 128 bytes or
	// more, so the sizes next to the threshold put the whole encoding on
	// either side of it.
	overhead := len(objectOf(make([]byte, 200), "application/json").Marshal()) - 200
	sizes := []struct {
		name string
		n    int
	}{
		{"0 B", 0},
		{"1 B", 1},
		{"below threshold", compressMinBytes - 1 - overhead},
		{"at threshold", compressMinBytes - overhead},
		{"just above threshold", compressMinBytes + 1 - overhead},
		{"1 KiB", 1 << 10},
		{"64 KiB", 64 << 10},
		{"1 MiB", 1 << 20},
	}
	for _, size := range sizes {
		for _, kind := range []string{kindJSON, kindRepetitive, kindRandom} {
			t.Run(size.name+"/"+kind, func(t *testing.T) {
				obj := objectOf(valueOf(kind, size.n, uint64(size.n)), "application/json")
				plain := obj.Marshal()
				if strings.Contains(size.name, "threshold") && len(plain)-size.n != overhead {
					t.Fatalf("setup: a %d-byte value makes a %d-byte object", size.n, len(plain))
				}
				rec := roundTrip(t, obj)
				compressed := rec[0] == recordS2
				switch {
				case len(plain) < compressMinBytes || kind == kindRandom:
					if compressed || !bytes.Equal(rec, plain) {
						t.Fatalf("a %d-byte %s object was not stored as its plain encoding", len(plain), kind)
					}
				case kind == kindRepetitive || len(plain) >= 1<<10:
					// A short JSON text may not save 12.5%; anything longer does.
					if !compressed {
						t.Fatalf("a %d-byte %s object was stored plain", len(plain), kind)
					}
				}
			})
		}
	}
}

func TestRecordRoundTripSiblingsAndTombstones(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	a, b, c := version.Actor(1), version.Actor(2), version.Actor(3)
	var mixed *version.Object
	mixed, _ = mixed.Write(a, nil, valueOf(kindRandom, 4<<10, 1), "application/octet-stream", now)
	mixed, _ = mixed.Write(b, nil, valueOf(kindJSON, 16<<10, 2), "application/json", now)
	mixed, _ = mixed.Write(c, nil, nil, "", now)
	mixed, _ = mixed.Write(a, nil, valueOf(kindRepetitive, 300, 3), "text/plain", now)
	if len(mixed.Siblings) != 4 {
		t.Fatalf("setup: %d siblings, want 4", len(mixed.Siblings))
	}
	// Mostly incompressible: what compression saves on the small JSON
	// sibling is under 12.5% of the whole.
	mostlyRandom, _ := objectOf(valueOf(kindRandom, 64<<10, 4), "").Write(b, nil, valueOf(kindJSON, 4<<10, 5), "", now)
	tombstone := mixed.Delete(mixed.Context(), now)

	// A long history: a tombstone with a big clock is worth compressing on
	// its own.
	var history version.Clock
	for i := range 200 {
		history = history.With(version.Dot{Actor: version.Actor(i + 1), Counter: uint64(i + 1)})
	}
	bigTombstone := (&version.Object{Clock: history}).Delete(history, now)

	for _, tc := range []struct {
		name       string
		obj        *version.Object
		compressed bool
	}{
		{"siblings with mixed values", mixed, true},
		{"mostly incompressible siblings", mostlyRandom, false},
		{"tombstone", tombstone, false},
		{"tombstone with a long history", bigTombstone, true},
		{"nil object", nil, false},
		{"clock without siblings or deletion time", &version.Object{Clock: mixed.Clock}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := roundTrip(t, tc.obj)
			if got := rec[0] == recordS2; got != tc.compressed {
				t.Fatalf("compressed = %v, want %v (%d-byte record of a %d-byte object)",
					got, tc.compressed, len(rec), len(tc.obj.Marshal()))
			}
		})
	}
}

// oldRecords are plain records as data dirs written before compression hold
// them, spelled out byte by byte so that a change to either encoding shows.
var oldRecords = []struct {
	name string
	raw  []byte
	want *version.Object
}{
	{
		name: "format 1, one sibling",
		raw: []byte{
			1,                      // format
			1,                      // clock entries
			0, 0, 0, 0, 0, 0, 0, 7, // actor
			2,                      // counter
			1,                      // siblings
			0, 0, 0, 0, 0, 0, 0, 7, // dot actor
			2,                            // dot counter
			0x80, 0xa8, 0xd6, 0xb9, 0x07, // modified: 1e9 ns, zigzag varint
			10, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n',
			5, 'h', 'e', 'l', 'l', 'o',
		},
		want: &version.Object{
			Clock: version.Clock{{Actor: 7, Counter: 2}},
			Siblings: []version.Sibling{{Dot: version.Dot{Actor: 7, Counter: 2}, Value: []byte("hello"),
				ContentType: "text/plain", Modified: 1e9}},
		},
	},
	{
		name: "format 2, tombstone",
		raw: []byte{
			2,                      // format
			1,                      // clock entries
			0, 0, 0, 0, 0, 0, 0, 7, // actor
			3, // counter
			0, // siblings
			4, // deleted: 2 ns, zigzag varint
		},
		want: &version.Object{Clock: version.Clock{{Actor: 7, Counter: 3}}, Deleted: 2},
	},
}

func TestRecordOldFormatsStillDecode(t *testing.T) {
	for _, tc := range oldRecords {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeObject(tc.raw, 3)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got.Marshal(), tc.want.Marshal()) || got.Deleted != tc.want.Deleted {
				t.Fatalf("decoded %+v, want %+v", got, tc.want)
			}
			// Small objects are still written exactly as before.
			if rec := encodeRecord(got); !bytes.Equal(rec, tc.raw) {
				t.Fatalf("re-encoded as % x, want the old record % x", rec, tc.raw)
			}
		})
	}
}

// wantMalformed checks that decoding raw failed cleanly.
func wantMalformed(t *testing.T, raw []byte) {
	t.Helper()
	obj, err := decodeObject(raw, 42)
	if err == nil {
		t.Fatalf("decoded % .40x into %+v, want an error", raw, obj)
	}
	if obj != nil || !errors.Is(err, version.ErrMalformed) || !strings.Contains(err.Error(), "partition 42") {
		t.Fatalf("rejection = %v, %v; want nil and a partition 42 ErrMalformed", obj, err)
	}
}

func compressedRecord(t *testing.T, plain []byte) []byte {
	t.Helper()
	return append([]byte{recordS2}, s2.Encode(nil, plain)...)
}

func TestRecordCorruptIsAnError(t *testing.T) {
	obj := objectOf(valueOf(kindJSON, 2<<10, 9), "application/json")
	rec := encodeRecord(obj)
	if rec[0] != recordS2 {
		t.Fatal("setup: the record is not compressed")
	}
	t.Run("truncated", func(t *testing.T) {
		for n := 1; n < len(rec); n++ {
			wantMalformed(t, rec[:n])
		}
	})
	t.Run("length beyond the limit", func(t *testing.T) {
		for _, n := range []uint64{maxRecordPlainBytes + 1, 1 << 31, 1<<32 - 1, 1 << 40} {
			raw := binary.AppendUvarint([]byte{recordS2}, n)
			wantMalformed(t, append(raw, rec[2:]...))
		}
	})
	t.Run("bad length varint", func(t *testing.T) {
		wantMalformed(t, []byte{recordS2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	})
	t.Run("length shorter or longer than the data", func(t *testing.T) {
		plain := obj.Marshal()
		block := s2.Encode(nil, plain)
		_, hdr := binary.Uvarint(block)
		for _, n := range []int{len(plain) - 1, len(plain) + 1, 0} {
			raw := binary.AppendUvarint([]byte{recordS2}, uint64(n))
			wantMalformed(t, append(raw, block[hdr:]...))
		}
	})
	t.Run("compressed garbage", func(t *testing.T) {
		wantMalformed(t, compressedRecord(t, bytes.Repeat([]byte("not an object "), 40)))
		wantMalformed(t, compressedRecord(t, nil))
	})
	t.Run("compressed record inside a compressed record", func(t *testing.T) {
		wantMalformed(t, compressedRecord(t, rec))
	})
	t.Run("trailing bytes after the object", func(t *testing.T) {
		wantMalformed(t, compressedRecord(t, append(obj.Marshal(), 0)))
	})
	t.Run("every bit flipped", func(t *testing.T) {
		// A flip may land in a literal and still decode (S2 blocks carry no
		// checksum, nor do plain records); it must never panic, and what
		// decodes must be a valid object.
		for i := range rec {
			for bit := range 8 {
				raw := bytes.Clone(rec)
				raw[i] ^= 1 << bit
				got, err := decodeObject(raw, 42)
				if err != nil {
					if !errors.Is(err, version.ErrMalformed) {
						t.Fatalf("flip of bit %d of byte %d: %v, want ErrMalformed", bit, i, err)
					}
					continue
				}
				if _, err := version.Unmarshal(got.Marshal()); err != nil {
					t.Fatalf("flip of bit %d of byte %d decoded to an invalid object: %v", bit, i, err)
				}
			}
		}
	})
	t.Run("empty", func(t *testing.T) {
		wantMalformed(t, []byte{})
		wantMalformed(t, []byte{recordS2})
	})
}

func FuzzDecodeStored(f *testing.F) {
	for _, tc := range oldRecords {
		f.Add(tc.raw)
	}
	for i, kind := range []string{kindJSON, kindRepetitive, kindRandom} {
		rec := encodeRecord(objectOf(valueOf(kind, 700, uint64(i)), "text/plain"))
		f.Add(rec)
		f.Add(rec[:len(rec)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{recordS2})
	f.Add([]byte{recordS2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(binary.AppendUvarint([]byte{recordS2}, maxRecordPlainBytes+1))
	f.Add(append([]byte{recordS2}, s2.Encode(nil, []byte{recordS2, 1, 2, 3})...))
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := bytes.Clone(raw)
		obj, err := decodeRecord(raw)
		if !bytes.Equal(in, raw) {
			t.Fatal("decoding modified its input")
		}
		if err != nil {
			if obj != nil || !errors.Is(err, version.ErrMalformed) {
				t.Fatalf("rejection = %v, %v; want nil, ErrMalformed", obj, err)
			}
			return
		}
		// Whatever decodes is a valid object that survives a round trip.
		plain := obj.Marshal()
		if _, err := version.Unmarshal(plain); err != nil {
			t.Fatalf("decoded an object whose encoding is invalid: %v", err)
		}
		again, err := decodeRecord(encodeRecord(obj))
		if err != nil || !bytes.Equal(again.Marshal(), plain) {
			t.Fatalf("round trip of a decoded object: %v", err)
		}
	})
}

// openTestStore is an object store on a fresh data dir, with anti-entropy off.
func openTestStore(t *testing.T) (*objectStore, *store.DB) {
	t.Helper()
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &objectStore{db: db}, db
}

func rawRecord(t *testing.T, db *store.DB, partition int, key string) []byte {
	t.Helper()
	raw, err := db.Get(uint32(partition), []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// The object store writes compressed records, reads them back, and reads
// the plain records of an older data dir.
func TestObjectStoreKeepsRecordsCompressed(t *testing.T) {
	s, db := openTestStore(t)
	value := valueOf(kindJSON, 16<<10, 1)
	write := func(key string, obj *version.Object) {
		t.Helper()
		if _, err := s.Apply(5, []byte(key), func(*version.Object) (*version.Object, error) { return obj, nil }); err != nil {
			t.Fatal(err)
		}
	}
	read := func(key string) *version.Object {
		t.Helper()
		obj, err := s.Get(5, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}

	json := objectOf(value, "application/json")
	write("json", json)
	raw := rawRecord(t, db, 5, "json")
	if raw[0] != recordS2 || len(raw) >= len(value)/2 {
		t.Fatalf("a 16 KiB JSON value is stored in a %d-byte record starting % x", len(raw), raw[:1])
	}
	if got := read("json"); !bytes.Equal(got.Marshal(), json.Marshal()) {
		t.Fatal("read back a different object")
	}

	random := objectOf(valueOf(kindRandom, 16<<10, 2), "")
	write("random", random)
	if raw := rawRecord(t, db, 5, "random"); !bytes.Equal(raw, random.Marshal()) {
		t.Fatal("an incompressible value is not stored as its plain encoding")
	}

	// A record of an older data dir: plain, read as is, and compressed the
	// next time the key changes.
	old := objectOf(value, "application/json")
	if _, err := db.Update(5, []byte("old"), func([]byte) ([]byte, error) { return old.Marshal(), nil }); err != nil {
		t.Fatal(err)
	}
	if got := read("old"); !bytes.Equal(got.Marshal(), old.Marshal()) {
		t.Fatal("a plain record read back different")
	}
	more, _ := old.Write(9, nil, valueOf(kindJSON, 16<<10, 3), "application/json", time.Unix(5, 0))
	n, err := s.MergeAll(5, []replication.RangeItem{{Key: []byte("old"), Object: more}})
	if err != nil || n != 1 {
		t.Fatalf("MergeAll = %d, %v", n, err)
	}
	if raw := rawRecord(t, db, 5, "old"); raw[0] != recordS2 {
		t.Fatal("the merged record was not compressed")
	}
	if got := read("old"); len(got.Siblings) != 2 || !bytes.Equal(got.Marshal(), more.Marshal()) {
		t.Fatalf("read back %d siblings, want both", len(got.Siblings))
	}

	var scanned []string
	err = s.Scan(5, nil, nil, func(key []byte, obj *version.Object) error {
		if !obj.Live() {
			return fmt.Errorf("%s scanned as not live", key)
		}
		scanned = append(scanned, string(key))
		return nil
	})
	if err != nil || strings.Join(scanned, ",") != "json,old,random" {
		t.Fatalf("scan = %q, %v", scanned, err)
	}
}

func TestRecordPlainLen(t *testing.T) {
	for _, tc := range oldRecords {
		if got := recordPlainLen(tc.raw); got != len(tc.raw) {
			t.Fatalf("%s: %d, want %d", tc.name, got, len(tc.raw))
		}
	}
	obj := objectOf(valueOf(kindRepetitive, 1<<20, 0), "")
	rec := encodeRecord(obj)
	if got := recordPlainLen(rec); got != len(obj.Marshal()) {
		t.Fatalf("compressed: %d, want %d", got, len(obj.Marshal()))
	}
	t.Logf("1 MiB of a repeated pattern: %d-byte record (%.0fx smaller)", len(rec), float64(len(obj.Marshal()))/float64(len(rec)))
	if got := recordPlainLen([]byte{recordS2, 0xff}); got != 0 {
		t.Fatalf("corrupt header: %d, want 0", got)
	}
}

// JSON corpus: documents shaped like what applications keep in a store,
// with field names repeated in every document and values that vary.

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Leslie", "Frances", "John"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Perlman", "Lamport", "Allen", "Backus"}
	cities     = []string{"Lisbon", "Osaka", "Toronto", "Nairobi", "Berlin", "Austin", "Lyon", "Pune", "Bergen", "Quito"}
	words      = strings.Fields("the quick data store keeps every write and never loses one while nodes come and go " +
		"replicas gossip about members and repair what they miss with merkle trees and hints")
	eventTypes = []string{"page_view", "click", "add_to_cart", "search", "checkout_started", "purchase"}
	agents     = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
	}
)

func pick(r *rand.Rand, s []string) string { return s[r.IntN(len(s))] }

func uuid(r *rand.Rand) string {
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff,
		0x8000|r.Uint32()&0x3fff, r.Uint64()&0xffffffffffff)
}

func timestamp(r *rand.Rand) string {
	return time.Unix(1_700_000_000+r.Int64N(30_000_000), r.Int64N(1e9)).UTC().Format(time.RFC3339Nano)
}

func sentence(r *rand.Rand, n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = pick(r, words)
	}
	return strings.Join(out, " ")
}

// jsonProfile is a user profile of about 1 KiB.
func jsonProfile(r *rand.Rand) []byte {
	first, last := pick(r, firstNames), pick(r, lastNames)
	doc := map[string]any{
		"id":         uuid(r),
		"username":   strings.ToLower(first+"."+last) + fmt.Sprint(r.IntN(1000)),
		"email":      strings.ToLower(first+"."+last) + "@example.com",
		"name":       map[string]string{"first": first, "last": last},
		"created_at": timestamp(r),
		"last_login": timestamp(r),
		"locale":     pick(r, []string{"en-US", "pt-PT", "ja-JP", "de-DE"}),
		"timezone":   pick(r, []string{"Europe/Lisbon", "Asia/Tokyo", "America/Toronto", "Africa/Nairobi"}),
		"address": map[string]any{
			"street": fmt.Sprintf("%d %s Street", 1+r.IntN(999), pick(r, lastNames)), "city": pick(r, cities),
			"postal_code": fmt.Sprintf("%05d", r.IntN(100000)), "country": pick(r, []string{"PT", "JP", "CA", "KE", "DE"}),
		},
		"phone": fmt.Sprintf("+%d %03d %03d %04d", 1+r.IntN(90), r.IntN(1000), r.IntN(1000), r.IntN(10000)),
		"preferences": map[string]any{
			"theme": pick(r, []string{"dark", "light", "system"}), "language": pick(r, []string{"en", "pt", "ja"}),
			"notifications": map[string]bool{"email": r.IntN(2) == 0, "sms": r.IntN(2) == 0, "push": r.IntN(2) == 0},
		},
		"roles":      []string{"user", pick(r, []string{"editor", "admin", "viewer"})},
		"tags":       []string{pick(r, words), pick(r, words), pick(r, words)},
		"stats":      map[string]int{"logins": r.IntN(5000), "posts": r.IntN(800), "followers": r.IntN(20000), "following": r.IntN(500)},
		"bio":        sentence(r, 20+r.IntN(20)),
		"avatar_url": fmt.Sprintf("https://cdn.example.com/avatars/%s.png", uuid(r)),
	}
	b, _ := json.Marshal(doc)
	return b
}

// jsonEvents is a session's event log of at least n bytes.
func jsonEvents(r *rand.Rand, n int) []byte {
	session := map[string]any{"session_id": uuid(r), "user_id": uuid(r), "started_at": timestamp(r)}
	var events []map[string]any
	for {
		events = append(events, map[string]any{
			"type":        pick(r, eventTypes),
			"ts":          timestamp(r),
			"url":         fmt.Sprintf("https://shop.example.com/products/%d?ref=%s", r.IntN(100000), pick(r, words)),
			"referrer":    fmt.Sprintf("https://www.example.org/search?q=%s+%s", pick(r, words), pick(r, words)),
			"user_agent":  pick(r, agents),
			"ip":          fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256)),
			"duration_ms": r.IntN(30000),
			"properties":  map[string]any{"price_cents": r.IntN(100000), "quantity": 1 + r.IntN(5), "sku": fmt.Sprintf("SKU-%06d", r.IntN(1e6))},
		})
		session["events"] = events
		if b, _ := json.Marshal(session); len(b) >= n {
			return b
		}
	}
}

// corpus is a benchmark's set of values.
type corpus struct {
	name   string
	values [][]byte
}

func benchCorpora() []corpus {
	r := rand.New(rand.NewPCG(7, 7))
	profiles, events, random := corpus{name: "json-1KiB"}, corpus{name: "json-16KiB"}, corpus{name: "random-1KiB"}
	for range 256 {
		profiles.values = append(profiles.values, jsonProfile(r))
	}
	for range 32 {
		events.values = append(events.values, jsonEvents(r, 16<<10))
	}
	for i := range 256 {
		random.values = append(random.values, valueOf(kindRandom, 1<<10, uint64(i)))
	}
	return []corpus{profiles, events, random}
}

// benchObjects wraps each value of c in an object, as a coordinator would
// store it.
func benchObjects(c corpus) []*version.Object {
	objs := make([]*version.Object, len(c.values))
	for i, v := range c.values {
		objs[i] = objectOf(v, "application/json")
	}
	return objs
}

// codec is a block compressor production's S2 was measured against. Both
// functions write into dst when it is big enough, as production's pooled
// buffers let S2 do.
type codec struct {
	name       string
	compress   func(dst, plain []byte) []byte
	decompress func(dst, block []byte) ([]byte, error)
}

func benchCodecs(b *testing.B) []codec {
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(zdec.Close)
	return []codec{
		{"s2", s2.Encode, s2.Decode},
		{"s2-better", s2.EncodeBetter, s2.Decode},
		{"zstd-fastest", func(dst, p []byte) []byte { return zenc.EncodeAll(p, dst[:0]) },
			func(dst, block []byte) ([]byte, error) { return zdec.DecodeAll(block, dst[:0]) }},
	}
}

// reportRate reports time per MiB of input, the inverse of MB/s in the
// unit the README uses.
func reportRate(b *testing.B, ops int, bytesPerOp int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops*bytesPerOp)*(1<<20), "ns/MiB")
}

// plainBytes returns the plain encodings of objs and their mean length.
func plainBytes(objs []*version.Object) ([][]byte, int) {
	out, total := make([][]byte, len(objs)), 0
	for i, o := range objs {
		out[i] = o.Marshal()
		total += len(out[i])
	}
	return out, total / len(objs)
}

// BenchmarkRecordEncode measures turning an object into the bytes the
// store keeps: "plain" is what was stored before compression (Marshal),
// "stored" is encodeRecord, including, for incompressible values, the
// attempt it then discards. stored/plain is the size ratio over the corpus.
//
//	go test -run '^$' -bench 'Record|Codec' -benchmem ./node/
func BenchmarkRecordEncode(b *testing.B) {
	for _, c := range benchCorpora() {
		objs := benchObjects(c)
		plains, mean := plainBytes(objs)
		plainTotal, storedTotal := 0, 0
		for i, o := range objs {
			plainTotal += len(plains[i])
			storedTotal += len(encodeRecord(o))
		}
		for _, name := range []string{"plain", "stored"} {
			b.Run(c.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(mean))
				i := 0
				for ; b.Loop(); i++ {
					if name == "plain" {
						objs[i%len(objs)].Marshal()
					} else {
						encodeRecord(objs[i%len(objs)])
					}
				}
				reportRate(b, i, mean)
				if name == "stored" {
					b.ReportMetric(float64(storedTotal)/float64(plainTotal), "stored/plain")
					b.ReportMetric(float64(storedTotal)/float64(len(objs)), "B/record")
				}
			})
		}
	}
}

// BenchmarkRecordDecode measures reading an object back: "plain" from its
// plain encoding (version.Unmarshal, as before compression), "stored" from
// its record (decodeRecord).
func BenchmarkRecordDecode(b *testing.B) {
	for _, c := range benchCorpora() {
		objs := benchObjects(c)
		plains, mean := plainBytes(objs)
		recs := make([][]byte, len(objs))
		for i, o := range objs {
			recs[i] = encodeRecord(o)
		}
		for _, name := range []string{"plain", "stored"} {
			b.Run(c.name+"/"+name, func(b *testing.B) {
				in := plains
				if name == "stored" {
					in = recs
				}
				b.SetBytes(int64(mean))
				i := 0
				for ; b.Loop(); i++ {
					if _, err := decodeRecord(in[i%len(in)]); err != nil {
						b.Fatal(err)
					}
				}
				reportRate(b, i, mean)
			})
		}
	}
}

// BenchmarkCodec compares block compressors on the plain encodings alone:
// compressed/plain is the raw ratio, before the keep-if-12.5%-smaller rule.
func BenchmarkCodec(b *testing.B) {
	codecs := benchCodecs(b)
	for _, c := range benchCorpora() {
		plains, mean := plainBytes(benchObjects(c))
		for _, cd := range codecs {
			blocks := make([][]byte, len(plains))
			plainTotal, blockTotal, longest := 0, 0, 0
			for i, p := range plains {
				blocks[i] = cd.compress(nil, p)
				plainTotal += len(p)
				blockTotal += len(blocks[i])
				longest = max(longest, len(p))
			}
			dst := make([]byte, s2.MaxEncodedLen(longest)+1<<10)
			b.Run(c.name+"/"+cd.name+"/compress", func(b *testing.B) {
				b.SetBytes(int64(mean))
				i := 0
				for ; b.Loop(); i++ {
					cd.compress(dst, plains[i%len(plains)])
				}
				reportRate(b, i, mean)
				b.ReportMetric(float64(blockTotal)/float64(plainTotal), "compressed/plain")
			})
			b.Run(c.name+"/"+cd.name+"/decompress", func(b *testing.B) {
				b.SetBytes(int64(mean))
				i := 0
				for ; b.Loop(); i++ {
					if _, err := cd.decompress(dst, blocks[i%len(blocks)]); err != nil {
						b.Fatal(err)
					}
				}
				reportRate(b, i, mean)
			})
		}
	}
}
