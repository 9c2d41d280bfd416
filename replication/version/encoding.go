package version

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits that keep a decoder from being talked into huge allocations.
const (
	// MaxClockEntries bounds a decoded clock: far above any real count of
	// coordinator incarnations, far below what could hurt.
	MaxClockEntries = 4096
	// MaxContextLen bounds the base64 text of a context; a clock of
	// MaxClockEntries entries fits.
	MaxContextLen = 128 << 10

	formatV1 byte = 1
	// formatV2 is formatV1 followed by a tombstone's deletion time (a
	// varint); objects with none are still written as formatV1.
	formatV2 byte = 2
)

// ErrMalformed reports bytes that are not a valid encoding.
var ErrMalformed = errors.New("version: malformed encoding")

// EncodeContext renders a clock as the opaque X-Context token: a format byte,
// the entry count and each (actor, counter), in URL-safe base64 without padding.
func EncodeContext(c Clock) string {
	return base64.RawURLEncoding.EncodeToString(appendClock([]byte{formatV1}, c))
}

// DecodeContext parses an X-Context token. Any token that EncodeContext could
// not have produced is rejected with ErrMalformed.
func DecodeContext(s string) (Clock, error) {
	if len(s) > MaxContextLen {
		return nil, fmt.Errorf("%w: context longer than %d bytes", ErrMalformed, MaxContextLen)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: context is not unpadded URL-safe base64", ErrMalformed)
	}
	// The base64 decoder skips '\r' and '\n' even in strict mode; such a
	// token is longer than the one EncodeContext would have produced.
	if base64.RawURLEncoding.EncodedLen(len(raw)) != len(s) {
		return nil, fmt.Errorf("%w: context is not unpadded URL-safe base64", ErrMalformed)
	}
	d := decoder{buf: raw}
	if d.byte() != formatV1 {
		return nil, fmt.Errorf("%w: unknown context format", ErrMalformed)
	}
	c := d.clock()
	if d.err == nil && len(d.buf) > 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// Marshal encodes o for storage and for the peer protocol.
func (o *Object) Marshal() []byte {
	return o.AppendBinary(nil)
}

// AppendBinary appends o's encoding to buf.
func (o *Object) AppendBinary(buf []byte) []byte {
	cur := o.orEmpty()
	format := formatV1
	if cur.Deleted != 0 && len(cur.Siblings) == 0 {
		format = formatV2
	}
	buf = append(buf, format)
	buf = appendClock(buf, cur.Clock)
	buf = binary.AppendUvarint(buf, uint64(len(cur.Siblings)))
	for _, s := range cur.Siblings {
		buf = appendEntry(buf, s.Dot.Actor, s.Dot.Counter)
		buf = binary.AppendVarint(buf, s.Modified)
		buf = appendBytes(buf, []byte(s.ContentType))
		buf = appendBytes(buf, s.Value)
	}
	if format == formatV2 {
		buf = binary.AppendVarint(buf, cur.Deleted)
	}
	return buf
}

// Unmarshal decodes an object encoded by Marshal. The result does not alias
// data. Encodings that break the Object invariants are rejected.
func Unmarshal(data []byte) (*Object, error) {
	d := decoder{buf: data}
	o, err := d.object()
	if err == nil && len(d.buf) > 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrMalformed)
	}
	return o, err
}

// DecodeObject reads one object from the front of data and returns the rest,
// for protocols that frame several values.
func DecodeObject(data []byte) (*Object, []byte, error) {
	d := decoder{buf: data}
	o, err := d.object()
	return o, d.buf, err
}

// AppendClock appends c's encoding (uvarint count, then per entry an 8-byte
// big-endian actor and a uvarint counter), the same one contexts and
// objects use, for protocols that carry clocks on their own.
func AppendClock(buf []byte, c Clock) []byte { return appendClock(buf, c) }

// DecodeClock reads one clock encoded by AppendClock from the front of
// data and returns the rest; invalid clocks are rejected with ErrMalformed.
func DecodeClock(data []byte) (Clock, []byte, error) {
	d := decoder{buf: data}
	c := d.clock()
	if d.err != nil {
		return nil, nil, d.err
	}
	return c, d.buf, nil
}

func appendClock(buf []byte, c Clock) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(c)))
	for _, e := range c {
		buf = appendEntry(buf, e.Actor, e.Counter)
	}
	return buf
}

func appendEntry(buf []byte, a Actor, counter uint64) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(a))
	return binary.AppendUvarint(buf, counter)
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

// decoder reads the encodings above; the first failure sticks in err and
// every later read returns zero values.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, msg)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.buf) < 1 {
		d.fail("truncated")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 || overlong(d.buf[:n]) {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 || overlong(d.buf[:n]) {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// overlong reports a varint padded with zero high groups (0x81 0x00 for 1):
// binary.Uvarint accepts it, but the encoder never writes it, and accepting it
// would give one value several encodings.
func overlong(v []byte) bool { return len(v) > 1 && v[len(v)-1] == 0 }

func (d *decoder) actor() Actor {
	if d.err != nil || len(d.buf) < 8 {
		d.fail("truncated")
		return 0
	}
	a := Actor(binary.BigEndian.Uint64(d.buf))
	d.buf = d.buf[8:]
	return a
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("truncated")
		return nil
	}
	b := append([]byte(nil), d.buf[:n]...)
	d.buf = d.buf[n:]
	return b
}

// count reads a length prefix and checks it against limit and against the
// bytes left, each item taking at least minSize bytes.
func (d *decoder) count(limit, minSize int) int {
	n := d.uvarint()
	if d.err == nil && (n > uint64(limit) || n*uint64(minSize) > uint64(len(d.buf))) {
		d.fail("count out of range")
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) clock() Clock {
	n := d.count(MaxClockEntries, 9)
	if n == 0 {
		return nil
	}
	c := make(Clock, n)
	for i := range c {
		c[i] = Entry{Actor: d.actor(), Counter: d.uvarint()}
	}
	if d.err == nil && !c.valid() {
		d.fail("clock entries unsorted, duplicated or zero")
	}
	return c
}

func (d *decoder) object() (*Object, error) {
	format := d.byte()
	if format != formatV1 && format != formatV2 {
		d.fail("unknown object format")
		return nil, d.err
	}
	o := &Object{Clock: d.clock()}
	n := d.count(1<<20, 12)
	if n > 0 {
		o.Siblings = make([]Sibling, n)
	}
	for i := range o.Siblings {
		s := &o.Siblings[i]
		s.Dot = Dot{Actor: d.actor(), Counter: d.uvarint()}
		s.Modified = d.varint()
		s.ContentType = string(d.bytes())
		s.Value = d.bytes()
		if d.err != nil {
			return nil, d.err
		}
		if !o.Clock.Covers(s.Dot) || (i > 0 && !dotLess(o.Siblings[i-1].Dot, s.Dot)) {
			d.fail("sibling dots unsorted or not covered by the clock")
		}
	}
	if format == formatV2 {
		if o.Deleted = d.varint(); d.err == nil && (o.Deleted == 0 || len(o.Siblings) > 0) {
			d.fail("deletion time on a live object, or zero")
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return o, nil
}
