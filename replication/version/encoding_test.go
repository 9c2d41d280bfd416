package version

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// randActor favours the extremes, whose big-endian bytes stress the format.
func randActor(r *rand.Rand) Actor {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	case 2:
		return Actor(r.IntN(4))
	}
	return Actor(r.Uint64())
}

func randCounter(r *rand.Rand) uint64 {
	switch r.IntN(5) {
	case 0:
		return math.MaxUint64
	case 1:
		return 1 + r.Uint64N(1<<14) // one to two varint bytes
	}
	return max(1, r.Uint64()>>r.IntN(64))
}

// randEncClock draws a valid clock with arbitrary actors and counters.
func randEncClock(r *rand.Rand, n int) Clock {
	seen := map[Actor]bool{}
	var c Clock
	for range n {
		a := randActor(r)
		if seen[a] {
			continue
		}
		seen[a] = true
		c = append(c, Entry{a, randCounter(r)})
	}
	sortClock(c)
	return c
}

func sortClock(c Clock) {
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j-1].Actor > c[j].Actor; j-- {
			c[j-1], c[j] = c[j], c[j-1]
		}
	}
}

// randObject draws a valid object: siblings are distinct dots its clock covers.
func randObject(r *rand.Rand) *Object {
	o := &Object{Clock: randEncClock(r, r.IntN(5))}
	seen := map[Dot]bool{}
	for range r.IntN(4) {
		if len(o.Clock) == 0 {
			break
		}
		e := o.Clock[r.IntN(len(o.Clock))]
		d := Dot{e.Actor, e.Counter - r.Uint64N(min(e.Counter, 3))}
		if seen[d] {
			continue
		}
		seen[d] = true
		s := Sibling{Dot: d}
		switch r.IntN(4) {
		case 0: // nil value
		case 1:
			s.Value = []byte{}
		default:
			s.Value = make([]byte, r.IntN(300))
			for i := range s.Value {
				s.Value[i] = byte(r.Uint32())
			}
		}
		s.ContentType = []string{"", "text/plain", "application/octet-stream; charset=\x00\xff"}[r.IntN(3)]
		s.Modified = []int64{0, -1, math.MinInt64, math.MaxInt64, r.Int64()}[r.IntN(5)]
		o.Siblings = append(o.Siblings, s)
	}
	sortSiblings(o.Siblings)
	return o
}

// sameObject compares everything an encoding carries, values included.
func sameObject(a, b *Object) bool {
	if !a.orEmpty().Equal(b.orEmpty()) {
		return false
	}
	for i, s := range a.orEmpty().Siblings {
		t := b.Siblings[i]
		if !bytes.Equal(s.Value, t.Value) || s.ContentType != t.ContentType || s.Modified != t.Modified {
			return false
		}
	}
	return true
}

func TestObjectRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 2000 {
		o := randObject(r)
		data := o.Marshal()
		got, err := Unmarshal(data)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(%+v)): %v", o, err)
		}
		checkObject(t, got)
		if !sameObject(o, got) {
			t.Fatalf("round trip: %+v became %+v", o, got)
		}
		if !bytes.Equal(got.Marshal(), data) {
			t.Fatal("re-encoding differs")
		}
		if !bytes.Equal(o.AppendBinary([]byte("prefix")), append([]byte("prefix"), data...)) {
			t.Fatal("AppendBinary disagrees with Marshal")
		}
	}
}

func TestObjectRoundTripEdgeCases(t *testing.T) {
	for name, o := range map[string]*Object{
		"nil":       nil,
		"empty":     {},
		"tombstone": {Clock: Clock{{actA, 3}}},
		"empty value and type": {
			Clock:    Clock{{actA, 1}},
			Siblings: []Sibling{{Dot: Dot{actA, 1}}},
		},
		"empty non-nil value": {
			Clock:    Clock{{actA, 1}},
			Siblings: []Sibling{{Dot: Dot{actA, 1}, Value: []byte{}, Modified: -5}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Unmarshal(o.Marshal())
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !sameObject(o, got) {
				t.Fatalf("got %+v, want %+v", got, o)
			}
		})
	}
	// The nil object encodes as the empty one: no history, no siblings.
	if !bytes.Equal((*Object)(nil).Marshal(), (&Object{}).Marshal()) {
		t.Fatal("nil and empty objects encode differently")
	}
}

func TestUnmarshalDoesNotAlias(t *testing.T) {
	o := &Object{Clock: Clock{{actA, 1}}, Siblings: []Sibling{{Dot: Dot{actA, 1}, Value: []byte("hello"), ContentType: "t"}}}
	data := o.Marshal()
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 0
	}
	if string(got.Siblings[0].Value) != "hello" || got.Siblings[0].ContentType != "t" {
		t.Fatalf("decoded object aliases its input: %+v", got.Siblings[0])
	}
}

func TestDecodeObjectFraming(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for range 200 {
		var objs []*Object
		var buf []byte
		for range 1 + r.IntN(5) {
			o := randObject(r)
			objs = append(objs, o)
			buf = o.AppendBinary(buf)
		}
		rest := buf
		for i, want := range objs {
			var got *Object
			var err error
			got, rest, err = DecodeObject(rest)
			if err != nil {
				t.Fatalf("object %d: %v", i, err)
			}
			if !sameObject(want, got) {
				t.Fatalf("object %d: got %+v, want %+v", i, got, want)
			}
		}
		if len(rest) != 0 {
			t.Fatalf("%d bytes left over", len(rest))
		}
		// Concatenated objects are not one object.
		if len(objs) > 1 {
			if _, err := Unmarshal(buf); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal of %d framed objects: %v", len(objs), err)
			}
		}
		// A truncated frame is an error, not a short object.
		if _, _, err := DecodeObject(buf[:len(objs[0].Marshal())-1]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated frame: %v", err)
		}
	}
}

func TestContextRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for range 2000 {
		c := randEncClock(r, r.IntN(6))
		s := EncodeContext(c)
		if strings.ContainsAny(s, "=+/\r\n") {
			t.Fatalf("token %q is not unpadded URL-safe base64", s)
		}
		got, err := DecodeContext(s)
		if err != nil {
			t.Fatalf("DecodeContext(EncodeContext(%v)): %v", c, err)
		}
		if !got.Equal(c) || EncodeContext(got) != s {
			t.Fatalf("round trip: %v became %v", c, got)
		}
	}
	if s := EncodeContext(nil); s != "AQA" {
		t.Fatalf("EncodeContext(nil) = %q", s)
	}
	if got, err := DecodeContext("AQA"); err != nil || got != nil {
		t.Fatalf("DecodeContext(empty clock) = %v, %v; want nil, nil", got, err)
	}
}

func TestContextMaxEntries(t *testing.T) {
	c := make(Clock, MaxClockEntries)
	for i := range c {
		c[i] = Entry{Actor(math.MaxUint64 - uint64(MaxClockEntries-i)), math.MaxUint64}
	}
	s := EncodeContext(c)
	if len(s) > MaxContextLen {
		t.Fatalf("a clock of MaxClockEntries entries encodes to %d bytes > MaxContextLen", len(s))
	}
	got, err := DecodeContext(s)
	if err != nil || !got.Equal(c) {
		t.Fatalf("largest clock: %v", err)
	}
	c = append(c, Entry{math.MaxUint64, 1})
	if _, err := DecodeContext(EncodeContext(c)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("clock of MaxClockEntries+1 entries: %v", err)
	}
}

// Raw encodings built by hand, for inputs the encoder cannot produce.

func rawEntry(a Actor, counter uint64) []byte { return appendEntry(nil, a, counter) }

func rawClock(n uint64, entries ...[]byte) []byte {
	b := binary.AppendUvarint(nil, n)
	for _, e := range entries {
		b = append(b, e...)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var v1 = []byte{formatV1}

func tok(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }

func TestDecodeContextRejects(t *testing.T) {
	valid := cat(v1, rawClock(2, rawEntry(0xfbfbfbfbfbfbfbfb, 300), rawEntry(math.MaxUint64, 1)))
	validTok := tok(valid)
	if _, err := DecodeContext(validTok); err != nil {
		t.Fatalf("setup: %v", err)
	}
	if !strings.ContainsAny(validTok, "-") || !strings.ContainsAny(validTok, "_") {
		t.Fatalf("setup: %q should hold both URL-only characters", validTok)
	}
	cases := map[string]string{
		"empty":                 "",
		"padded":                base64.URLEncoding.EncodeToString(cat(v1, rawClock(0))),
		"padded valid length":   validTok + "==",
		"standard plus":         strings.ReplaceAll(validTok, "-", "+"),
		"standard slash":        strings.ReplaceAll(validTok, "_", "/"),
		"standard encoding":     base64.RawStdEncoding.EncodeToString(valid),
		"garbage":               "not a context!",
		"garbage symbols":       "@@@@",
		"nul":                   "\x00",
		"non-ascii":             "AQA\u00e9",
		"space":                 "AQ A",
		"newline":               "AQ\nA",
		"carriage return":       "A\rQA",
		"trailing newline":      validTok + "\n",
		"non-zero pad bits":     "AQB",
		"impossible length":     "AQAAA",
		"format zero":           tok(cat([]byte{0}, rawClock(0))),
		"format two":            tok(cat([]byte{2}, rawClock(0))),
		"format 0xff":           tok(cat([]byte{0xff}, rawClock(0))),
		"format only":           tok(v1),
		"trailing zero":         tok(cat(valid, []byte{0})),
		"trailing entry":        tok(cat(valid, rawEntry(1, 1))),
		"unsorted":              tok(cat(v1, rawClock(2, rawEntry(2, 1), rawEntry(1, 1)))),
		"duplicate actor":       tok(cat(v1, rawClock(2, rawEntry(1, 1), rawEntry(1, 2)))),
		"zero counter":          tok(cat(v1, rawClock(1, rawEntry(1, 0)))),
		"zero counter second":   tok(cat(v1, rawClock(2, rawEntry(1, 1), rawEntry(2, 0)))),
		"count beyond input":    tok(cat(v1, rawClock(2, rawEntry(1, 1)))),
		"count huge":            tok(cat(v1, rawClock(math.MaxUint64, rawEntry(1, 1)))),
		"count over limit":      tok(cat(v1, rawClock(MaxClockEntries+1), bytes.Repeat([]byte{0}, 9*(MaxClockEntries+1)))),
		"count varint too long": tok(cat(v1, bytes.Repeat([]byte{0xff}, 11))),
		"counter overflow":      tok(cat(v1, rawClock(1), make([]byte, 8), bytes.Repeat([]byte{0xff}, 9), []byte{0x02})),
		"overlong count":        tok(cat(v1, []byte{0x81, 0x00}, rawEntry(1, 1))),
		"overlong zero count":   tok(cat(v1, []byte{0x80, 0x00})),
		"overlong counter":      tok(cat(v1, rawClock(1), make([]byte, 8), []byte{0x81, 0x80, 0x00})),
		"over-long string":      strings.Repeat("A", MaxContextLen+1),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := DecodeContext(s)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeContext(%.40q) = %v, %v; want ErrMalformed", s, c, err)
			}
			if c != nil {
				t.Fatalf("rejected token returned clock %v", c)
			}
		})
	}
}

func TestDecodeContextRejectsTruncations(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for range 100 {
		c := randEncClock(r, 1+r.IntN(4))
		raw := cat(v1, appendClock(nil, c))
		for n := range len(raw) {
			if got, err := DecodeContext(tok(raw[:n])); !errors.Is(err, ErrMalformed) {
				t.Fatalf("raw prefix %d of %v decoded to %v, %v", n, c, got, err)
			}
		}
		s := EncodeContext(c)
		for n := range len(s) {
			if got, err := DecodeContext(s[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("token prefix %q of %v decoded to %v, %v", s[:n], c, got, err)
			}
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	clk := rawClock(1, rawEntry(actA, 2))
	sib := func(a Actor, counter uint64) []byte {
		return cat(rawEntry(a, counter), binary.AppendVarint(nil, 7), []byte{1, 't', 2, 'h', 'i'})
	}
	cases := map[string][]byte{
		"nil":                  nil,
		"empty":                {},
		"format zero":          cat([]byte{0}, rawClock(0), []byte{0}),
		"format two":           cat([]byte{2}, rawClock(0), []byte{0}),
		"no sibling count":     cat(v1, rawClock(0)),
		"trailing bytes":       cat(v1, rawClock(0), []byte{0, 0}),
		"bad clock":            cat(v1, rawClock(2, rawEntry(2, 1), rawEntry(1, 1)), []byte{0}),
		"zero clock counter":   cat(v1, rawClock(1, rawEntry(1, 0)), []byte{0}),
		"sibling not covered":  cat(v1, clk, []byte{1}, sib(actA, 3)),
		"sibling other actor":  cat(v1, clk, []byte{1}, sib(actB, 1)),
		"sibling zero counter": cat(v1, clk, []byte{1}, sib(actA, 0)),
		"siblings unsorted":    cat(v1, clk, []byte{2}, sib(actA, 2), sib(actA, 1)),
		"siblings duplicated":  cat(v1, clk, []byte{2}, sib(actA, 1), sib(actA, 1)),
		"sibling count beyond": cat(v1, clk, []byte{2}, sib(actA, 1)),
		"sibling count huge":   cat(v1, clk, binary.AppendUvarint(nil, 1<<20+1), bytes.Repeat(sib(actA, 1), 2)),
		"string beyond input":  cat(v1, clk, []byte{1}, rawEntry(actA, 1), []byte{0, 1, 't', 50, 'h', 'i'}),
		"string length huge":   cat(v1, clk, []byte{1}, rawEntry(actA, 1), []byte{0, 1, 't'}, binary.AppendUvarint(nil, math.MaxUint64), []byte("hi")),
		"type beyond input":    cat(v1, clk, []byte{1}, rawEntry(actA, 1), []byte{0, 200, 't', 0, 0, 0}),
		"overlong modified":    cat(v1, clk, []byte{1}, rawEntry(actA, 1), []byte{0x80, 0x00, 0, 0}),
		"overlong value len":   cat(v1, clk, []byte{1}, rawEntry(actA, 1), []byte{0, 0, 0x80, 0x00}),
		"overlong sib count":   cat(v1, clk, []byte{0x81, 0x00}, sib(actA, 1)),
		"modified overflow":    cat(v1, clk, []byte{1}, rawEntry(actA, 1), bytes.Repeat([]byte{0xff}, 10), []byte{0, 0}),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			o, err := Unmarshal(data)
			if !errors.Is(err, ErrMalformed) || o != nil {
				t.Fatalf("Unmarshal = %+v, %v; want ErrMalformed", o, err)
			}
			if name == "trailing bytes" {
				return // the next frame, for DecodeObject
			}
			o, _, err = DecodeObject(data)
			if !errors.Is(err, ErrMalformed) || o != nil {
				t.Fatalf("DecodeObject = %+v, %v; want ErrMalformed", o, err)
			}
		})
	}
	// The hand-built sibling encoding is right: a covered, sorted pair decodes.
	ok := cat(v1, clk, []byte{2}, sib(actA, 1), sib(actA, 2))
	if o, err := Unmarshal(ok); err != nil || len(o.Siblings) != 2 || string(o.Siblings[1].Value) != "hi" {
		t.Fatalf("control encoding: %+v, %v", o, err)
	}
}

func TestUnmarshalRejectsTruncations(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for range 300 {
		data := randObject(r).Marshal()
		for n := range len(data) {
			if o, err := Unmarshal(data[:n]); !errors.Is(err, ErrMalformed) || o != nil {
				t.Fatalf("prefix %d/%d decoded: %+v, %v", n, len(data), o, err)
			}
			if o, _, err := DecodeObject(data[:n]); !errors.Is(err, ErrMalformed) || o != nil {
				t.Fatalf("DecodeObject prefix %d/%d decoded: %+v, %v", n, len(data), o, err)
			}
		}
	}
}

func TestUnmarshalRejectsUncoveredSibling(t *testing.T) {
	// Marshal does not validate, so a broken object shows what the decoder checks.
	for name, o := range map[string]*Object{
		"uncovered": {Clock: Clock{{actA, 1}}, Siblings: []Sibling{{Dot: Dot{actA, 2}}}},
		"no clock":  {Siblings: []Sibling{{Dot: Dot{actA, 1}}}},
		"unsorted": {Clock: Clock{{actA, 2}, {actB, 1}}, Siblings: []Sibling{
			{Dot: Dot{actB, 1}}, {Dot: Dot{actA, 2}},
		}},
		"duplicate": {Clock: Clock{{actA, 2}}, Siblings: []Sibling{{Dot: Dot{actA, 2}}, {Dot: Dot{actA, 2}}}},
		"bad clock": {Clock: Clock{{actB, 1}, {actA, 1}}},
	} {
		if got, err := Unmarshal(o.Marshal()); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Unmarshal = %+v, %v; want ErrMalformed", name, got, err)
		}
	}
}

func BenchmarkMerge(b *testing.B) {
	// Two replicas of a key with three coordinators, two siblings each, one shared.
	base, _ := write(nil, actA, nil, "base")
	x, _ := write(base, actB, nil, "x")
	y, _ := write(base, actC, nil, "y")
	b.ReportAllocs()
	for b.Loop() {
		Merge(x, y)
	}
}

func oneKiBObject() *Object {
	o, _ := (*Object)(nil).Write(0x1234_5678_9abc_def0, nil, bytes.Repeat([]byte("x"), 1024), "application/octet-stream", t0)
	return o
}

func BenchmarkMarshal(b *testing.B) {
	o := oneKiBObject()
	buf := make([]byte, 0, 2048)
	b.SetBytes(int64(len(o.Marshal())))
	b.ReportAllocs()
	for b.Loop() {
		buf = o.AppendBinary(buf[:0])
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	data := oneKiBObject().Marshal()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}
