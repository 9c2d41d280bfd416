package merkle

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// sampleMessages are the kinds of message an exchange sends.
func sampleMessages(t testing.TB) []Message {
	a, b := loaded(t, 8, 2000), loaded(t, 8, 2000)
	b.Set(key(1), digest(1, 0), digest(1, 1))
	b.Set(key(2), digest(2, 0), digest(2, 1))
	start := a.Start()
	second, _ := b.Reply(start)
	third, _ := a.Reply(second)
	done, _ := b.Reply(third)
	inSync, _ := a.Reply(a.Start())
	return []Message{
		start, second, third, done, inSync,
		{LeafBits: 0, Nodes: []uint32{0}, Hashes: []Hash{0}},
		{LeafBits: MaxLeafBits, Depth: MaxLeafBits, Nodes: []uint32{0, 1, 2, 9, 1<<MaxLeafBits - 1}, Done: true},
		{LeafBits: 3, Depth: 3, Nodes: []uint32{0, 2, 4, 6, 7}, Hashes: []Hash{1, 2, 3, 4, 1<<64 - 1}},
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, m := range sampleMessages(t) {
		if err := m.validate(); err != nil {
			t.Fatalf("sample %+v is invalid: %v", m, err)
		}
		data := m.Marshal()
		got, err := Unmarshal(data)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(%+v)): %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
		}
		if want := len(m.Hashes) * hashSize; len(data) > want+16 && len(data) > want*9/8 {
			t.Fatalf("%d bytes to carry %d hashes", len(data), len(m.Hashes))
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	h := func(n int) []byte { return make([]byte, n*hashSize) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for name, data := range map[string][]byte{
		"empty":               {},
		"truncated header":    {1, 0, 4},
		"unknown format":      cat([]byte{2, 0, 4, 0, 1, 0, 0}, h(1)),
		"unknown flag":        cat([]byte{1, 2, 4, 0, 1, 0, 0}, h(1)),
		"leaf bits too big":   cat([]byte{1, 0, MaxLeafBits + 1, 0, 1, 0, 0}, h(1)),
		"depth past leaves":   cat([]byte{1, 0, 4, 5, 1, 0, 0}, h(1)),
		"no runs":             {1, 0, 4, 0, 0},
		"run past the level":  cat([]byte{1, 0, 4, 2, 1, 3, 1}, h(2)),
		"run start past":      cat([]byte{1, 0, 4, 2, 1, 4, 0}, h(1)),
		"second run past":     cat([]byte{1, 0, 4, 2, 2, 0, 1, 1, 0}, h(3)),
		"huge skip":           cat([]byte{1, 0, 4, 2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, h(1)),
		"overflowing uvarint": cat([]byte{1, 0, 4, 2, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, h(1)),
		"padded uvarint":      cat([]byte{1, 0, 4, 2, 1, 0x81, 0x00, 0}, h(1)),
		"run count too big":   cat([]byte{1, 0, 4, 2, 0xff, 0xff, 0x03, 0, 0}, h(1)),
		"missing hash":        cat([]byte{1, 0, 4, 2, 1, 0, 1}, h(1)),
		"extra hash bytes":    cat([]byte{1, 0, 4, 2, 1, 0, 0}, h(1), []byte{0}),
		"truncated hash":      cat([]byte{1, 0, 4, 2, 1, 0, 0}, h(1)[:7]),
		"hashes when done":    cat([]byte{1, 1, 4, 2, 1, 0, 0}, h(1)),
		"truncated run":       {1, 1, 4, 2, 2, 0, 0, 1},
	} {
		m, err := Unmarshal(data)
		if !errors.Is(err, ErrMalformed) || !reflect.DeepEqual(m, Message{}) {
			t.Errorf("%s: Unmarshal(%x) = %+v, %v; want ErrMalformed", name, data, m, err)
		}
	}
}

func TestUnmarshalDoesNotAlias(t *testing.T) {
	data := sampleMessages(t)[1].Marshal()
	m, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	want := m.Hashes[0]
	for i := range data {
		data[i] ^= 0xff
	}
	if m.Hashes[0] != want {
		t.Fatal("the decoded message changed with its input")
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, m := range sampleMessages(f) {
		data := m.Marshal()
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		m, err := Unmarshal(data)
		if !bytes.Equal(in, data) {
			t.Fatal("Unmarshal modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) || !reflect.DeepEqual(m, Message{}) {
				t.Fatalf("rejection = %+v, %v; want a zero Message, ErrMalformed", m, err)
			}
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("accepted an invalid message %+v: %v", m, err)
		}
		// The encoding is canonical: what is accepted is what Marshal writes.
		if out := m.Marshal(); !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, out)
		}
		// Whatever decodes can be answered without panicking.
		tr := New(min(m.LeafBits, 8))
		if _, err := tr.Reply(m); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Reply: %v", err)
		}
	})
}
