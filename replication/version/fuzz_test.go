package version

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime/metrics"
	"testing"
)

func FuzzDecodeContext(f *testing.F) {
	r := rand.New(rand.NewPCG(21, 22))
	f.Add("")
	f.Add("AQA")
	f.Add("AQ\nA")
	f.Add("AQA=")
	f.Add("AQB")
	f.Add(tok(cat(v1, []byte{0x81, 0x00})))
	f.Add(tok(cat(v1, rawClock(2, rawEntry(2, 1), rawEntry(1, 1)))))
	f.Add(tok(cat(v1, rawClock(1, rawEntry(1, 0)))))
	for range 8 {
		f.Add(EncodeContext(randEncClock(r, 1+r.IntN(4))))
	}
	f.Fuzz(func(t *testing.T, s string) {
		var (
			c   Clock
			err error
		)
		if n := allocated(func() { c, err = DecodeContext(s) }); n > maxDecodeAlloc(len(s)) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(s), n)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) || c != nil {
				t.Fatalf("rejection = %v, %v; want nil, ErrMalformed", c, err)
			}
			return
		}
		if !c.valid() || len(c) > MaxClockEntries {
			t.Fatalf("accepted an invalid clock %v", c)
		}
		// Tokens are canonical: only what EncodeContext writes is accepted.
		if got := EncodeContext(c); got != s {
			t.Fatalf("DecodeContext(%q) = %v, which encodes as %q", s, c, got)
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	r := rand.New(rand.NewPCG(23, 24))
	f.Add([]byte{})
	f.Add((*Object)(nil).Marshal())
	f.Add(cat(v1, rawClock(1, rawEntry(actA, 1)), []byte{1}, rawEntry(actA, 2), []byte{0, 0, 0}))
	f.Add(cat(v1, rawClock(0), []byte{0x80, 0x00}))
	for range 8 {
		data := randObject(r).Marshal()
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		var (
			o   *Object
			err error
		)
		if n := allocated(func() { o, err = Unmarshal(data) }); n > maxDecodeAlloc(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), n)
		}
		framed, rest, ferr := DecodeObject(data)
		if !bytes.Equal(in, data) {
			t.Fatal("decoding modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) || o != nil {
				t.Fatalf("rejection = %+v, %v; want nil, ErrMalformed", o, err)
			}
			// DecodeObject may still accept a valid prefix.
			if ferr == nil && len(rest) == 0 {
				t.Fatalf("DecodeObject accepted what Unmarshal rejected: %v", err)
			}
			return
		}
		if ferr != nil || len(rest) != 0 || !sameObject(o, framed) {
			t.Fatalf("DecodeObject disagrees with Unmarshal: %v, %d bytes left", ferr, len(rest))
		}
		checkObject(t, o)
		// The encoding is canonical, so the accepted bytes are what Marshal writes.
		enc := o.Marshal()
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, enc)
		}
		again, err := Unmarshal(enc)
		if err != nil || !sameObject(o, again) {
			t.Fatalf("re-decoding: %+v, %v", again, err)
		}
	})
}

// FuzzDecodeClock reads clocks as the peer protocol frames them: what is
// accepted is valid, is followed by the rest returned, and re-encodes to the
// bytes it was read from.
func FuzzDecodeClock(f *testing.F) {
	r := rand.New(rand.NewPCG(25, 26))
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add(rawClock(2, rawEntry(2, 1), rawEntry(1, 1)))
	f.Add(cat(rawClock(1, rawEntry(1, 0)), []byte{7}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	for range 6 {
		f.Add(cat(AppendClock(nil, randEncClock(r, 1+r.IntN(4))), []byte("rest")))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			c    Clock
			rest []byte
			err  error
		)
		if n := allocated(func() { c, rest, err = DecodeClock(data) }); n > maxDecodeAlloc(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), n)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) || c != nil || rest != nil {
				t.Fatalf("rejection = %v, %x, %v; want nil, nil, ErrMalformed", c, rest, err)
			}
			return
		}
		if !c.valid() || len(c) > MaxClockEntries {
			t.Fatalf("accepted an invalid clock %v", c)
		}
		if enc := AppendClock(nil, c); !bytes.Equal(cat(enc, rest), data) {
			t.Fatalf("clock %v re-encodes as %x, then %x; read from %x", c, enc, rest, data)
		}
	})
}

// maxDecodeAlloc bounds what decoding n bytes may allocate: a small multiple
// of n, plus slack for the runtime counting small allocations a span at a
// time.
func maxDecodeAlloc(n int) uint64 { return 64*uint64(n) + 1<<20 }

// allocated returns about how many bytes fn allocated on the heap.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}
