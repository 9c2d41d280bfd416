package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// The body of each message is its fields in order; the HTTP body is the
// frame, so nothing may follow the last field.
//
//	FetchRequest        partition:uvarint key:bytes
//	FetchResponse       object:optobject
//	StoreRequest        partition:uvarint key:bytes object:optobject hintfor:bytes
//	                    ringversion:u64 [flags:byte]
//	StoreResponse       (empty)
//	CoordinateRequest   op:byte flags:byte key:bytes value:bytes contenttype:bytes
//	                    context:clock quorum:uvarint
//	CoordinateResponse  object:optobject context:clock [siblings:uvarint]
//	RangeRequest        partition:uvarint after:bytes maxbytes:uvarint
//	                    ringversion:u64 buckets:optbytes (merkle Done message)
//	RangeResponse       count:uvarint, per item key:bytes object:optobject,
//	                    then next:optbytes flags:byte
//	ExchangeRequest     partition:uvarint message:bytes (merkle message)
//	ExchangeResponse    message:bytes (merkle message)
//
//	bytes      uvarint length, then that many bytes; empty decodes as nil
//	optbytes   0x00 for nil, or 0x01 then bytes; empty decodes as non-nil
//	u64        8 bytes, big-endian
//	optobject  0x00 for a nil object, or 0x01 then version's object encoding
//	clock      uvarint count, then per entry an 8-byte big-endian actor and
//	           a uvarint counter, sorted by actor, counters positive
//	flags      a bit set; bits a message does not define must be zero.
//	           CoordinateRequest bit 0: HasContext. RangeResponse bit 0:
//	           Incomplete. StoreRequest bit 0: Sole.
//
// StoreRequest's flags are sent only when not zero, so a store that is no
// sole hint is the same bytes as before the field existed.
//
// CoordinateResponse's siblings is sent only when it is 2 or more (a put
// that left siblings), and is then at least 2: an answer about a key with
// one version is the same bytes as before the field existed, and a
// coordinator that predates it sends none (0, not known).
//
// RangeRequest's after is plain bytes: nil and empty both mean "from the
// first key" (the store has no empty key to start after), so an empty After
// arrives as nil. RangeResponse's next must tell "no more pages" (nil) from
// any key, so it is optbytes. The codec does not check that a page's keys
// are in order or that next follows them; that is the handler's contract.
//
// Decoders reject anything an encoder could not have produced from valid
// values, except that uvarints need not be minimal. Decoded values never
// alias the input.

// errMalformed reports a body that is not a valid encoding.
var errMalformed = errors.New("peer: malformed message")

const (
	objectAbsent  byte = 0
	objectPresent byte = 1

	flagHasContext byte = 1
	flagIncomplete byte = 1
	flagSole       byte = 1

	// minRangeItem is the fewest bytes a range item takes: an empty key's
	// length and a nil object's marker.
	minRangeItem = 2
	// maxRangePrealloc bounds the items allocated before any is read, so a
	// huge count of tiny items costs memory only as it is decoded.
	maxRangePrealloc = 1 << 10

	// maxInt bounds decoded partitions and quorums: an int on any platform.
	maxInt = math.MaxInt32

	// minSiblingsSent is the smallest sibling count a CoordinateResponse
	// carries; below it the field is left out.
	minSiblingsSent = 2
)

func appendFetchRequest(buf []byte, r replication.FetchRequest) []byte {
	buf = appendInt(buf, r.Partition)
	return appendBytes(buf, r.Key)
}

func decodeFetchRequest(data []byte) (replication.FetchRequest, error) {
	d := decoder{buf: data}
	r := replication.FetchRequest{Partition: d.int("partition"), Key: d.bytes()}
	return r, d.finish()
}

func appendFetchResponse(buf []byte, r replication.FetchResponse) []byte {
	return appendObject(buf, r.Object)
}

func decodeFetchResponse(data []byte) (replication.FetchResponse, error) {
	d := decoder{buf: data}
	r := replication.FetchResponse{Object: d.object()}
	if err := d.finish(); err != nil {
		return replication.FetchResponse{}, err
	}
	return r, nil
}

func appendStoreRequest(buf []byte, r replication.StoreRequest) []byte {
	buf = appendInt(buf, r.Partition)
	buf = appendBytes(buf, r.Key)
	buf = appendObject(buf, r.Object)
	buf = appendBytes(buf, []byte(r.HintFor))
	buf = binary.BigEndian.AppendUint64(buf, r.RingVersion)
	if r.Sole {
		buf = append(buf, flagSole)
	}
	return buf
}

func decodeStoreRequest(data []byte) (replication.StoreRequest, error) {
	d := decoder{buf: data}
	r := replication.StoreRequest{Partition: d.int("partition"), Key: d.bytes(), Object: d.object()}
	r.HintFor = string(d.bytes())
	r.RingVersion = d.u64()
	if d.err == nil && len(d.buf) > 0 {
		// Present only when set: a zero byte is no encoder's output.
		if flags := d.flags(flagSole); flags == 0 {
			d.fail("store flags present but zero")
		} else {
			r.Sole = true
		}
	}
	return r, d.finish()
}

func appendStoreResponse(buf []byte, _ replication.StoreResponse) []byte { return buf }

func decodeStoreResponse(data []byte) (replication.StoreResponse, error) {
	d := decoder{buf: data}
	return replication.StoreResponse{}, d.finish()
}

func appendCoordinateRequest(buf []byte, r replication.CoordinateRequest) []byte {
	var flags byte
	if r.HasContext {
		flags |= flagHasContext
	}
	buf = append(buf, byte(r.Op), flags)
	buf = appendBytes(buf, r.Key)
	buf = appendBytes(buf, r.Value)
	buf = appendBytes(buf, []byte(r.ContentType))
	buf = appendClock(buf, r.Context)
	return appendInt(buf, r.Quorum)
}

func decodeCoordinateRequest(data []byte) (replication.CoordinateRequest, error) {
	d := decoder{buf: data}
	var r replication.CoordinateRequest
	r.Op = replication.Op(d.byte())
	if d.err == nil && (r.Op < replication.OpGet || r.Op > replication.OpDelete) {
		d.fail(fmt.Sprintf("unknown op %d", r.Op))
	}
	r.HasContext = d.flags(flagHasContext)&flagHasContext != 0
	r.Key = d.bytes()
	r.Value = d.bytes()
	r.ContentType = string(d.bytes())
	r.Context = d.clock()
	r.Quorum = d.int("quorum")
	if err := d.finish(); err != nil {
		return replication.CoordinateRequest{}, err
	}
	return r, nil
}

func appendCoordinateResponse(buf []byte, r replication.CoordinateResponse) []byte {
	buf = appendObject(buf, r.Object)
	buf = appendClock(buf, r.Context)
	if r.Siblings >= minSiblingsSent {
		buf = appendInt(buf, r.Siblings)
	}
	return buf
}

func decodeCoordinateResponse(data []byte) (replication.CoordinateResponse, error) {
	d := decoder{buf: data}
	r := replication.CoordinateResponse{Object: d.object(), Context: d.clock()}
	if d.err == nil && len(d.buf) > 0 {
		if r.Siblings = d.int("siblings"); d.err == nil && r.Siblings < minSiblingsSent {
			d.fail(fmt.Sprintf("siblings %d sent, want at least %d", r.Siblings, minSiblingsSent))
		}
	}
	if err := d.finish(); err != nil {
		return replication.CoordinateResponse{}, err
	}
	return r, nil
}

func appendRangeRequest(buf []byte, r replication.RangeRequest) []byte {
	buf = appendInt(buf, r.Partition)
	buf = appendBytes(buf, r.After)
	buf = appendInt(buf, r.MaxBytes)
	buf = binary.BigEndian.AppendUint64(buf, r.RingVersion)
	var buckets []byte
	if r.Buckets != nil {
		buckets = merkle.Message{Depth: r.Buckets.Depth, LeafBits: r.Buckets.Depth, Nodes: r.Buckets.Buckets, Done: true}.Marshal()
	}
	return appendOptBytes(buf, buckets)
}

func decodeRangeRequest(data []byte) (replication.RangeRequest, error) {
	d := decoder{buf: data}
	r := replication.RangeRequest{Partition: d.int("partition"), After: d.bytes(), MaxBytes: d.int("maxbytes")}
	r.RingVersion = d.u64()
	if buckets := d.optBytes(); buckets != nil && d.err == nil {
		m, err := merkle.Unmarshal(buckets)
		if err != nil || !m.Done {
			d.fail("range buckets: not a merkle outcome")
		} else {
			diff := m.Diff()
			r.Buckets = &diff
		}
	}
	if err := d.finish(); err != nil {
		return replication.RangeRequest{}, err
	}
	return r, nil
}

func appendRangeResponse(buf []byte, r replication.RangeResponse) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(r.Items)))
	for _, it := range r.Items {
		buf = appendBytes(buf, it.Key)
		buf = appendObject(buf, it.Object)
	}
	buf = appendOptBytes(buf, r.Next)
	return append(buf, incompleteFlags(r.Incomplete))
}

func decodeRangeResponse(data []byte) (replication.RangeResponse, error) {
	d := decoder{buf: data}
	var r replication.RangeResponse
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)/minRangeItem) {
		d.fail("range item count out of range")
	}
	if d.err == nil && n > 0 {
		r.Items = make([]replication.RangeItem, 0, min(n, maxRangePrealloc))
		for range n {
			it := replication.RangeItem{Key: d.bytes(), Object: d.object()}
			if d.err != nil {
				break
			}
			r.Items = append(r.Items, it)
		}
	}
	r.Next = d.optBytes()
	r.Incomplete = d.flags(flagIncomplete)&flagIncomplete != 0
	if err := d.finish(); err != nil {
		return replication.RangeResponse{}, err
	}
	return r, nil
}

func appendExchangeRequest(buf []byte, r replication.ExchangeRequest) []byte {
	buf = appendInt(buf, r.Partition)
	return appendBytes(buf, r.Message.Marshal())
}

func decodeExchangeRequest(data []byte) (replication.ExchangeRequest, error) {
	d := decoder{buf: data}
	r := replication.ExchangeRequest{Partition: d.int("partition")}
	r.Message = d.merkle()
	if err := d.finish(); err != nil {
		return replication.ExchangeRequest{}, err
	}
	return r, nil
}

func appendExchangeResponse(buf []byte, r replication.ExchangeResponse) []byte {
	return appendBytes(buf, r.Message.Marshal())
}

func decodeExchangeResponse(data []byte) (replication.ExchangeResponse, error) {
	d := decoder{buf: data}
	r := replication.ExchangeResponse{Message: d.merkle()}
	if err := d.finish(); err != nil {
		return replication.ExchangeResponse{}, err
	}
	return r, nil
}

func incompleteFlags(incomplete bool) byte {
	if incomplete {
		return flagIncomplete
	}
	return 0
}

// appendInt writes a partition or quorum. Negative values are written as
// huge uvarints that the decoder rejects, so they fail at the receiver
// instead of silently changing meaning.
func appendInt(buf []byte, v int) []byte { return binary.AppendUvarint(buf, uint64(v)) }

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func appendOptBytes(buf, b []byte) []byte {
	if b == nil {
		return append(buf, 0)
	}
	return appendBytes(append(buf, 1), b)
}

func appendObject(buf []byte, o *version.Object) []byte {
	if o == nil {
		return append(buf, objectAbsent)
	}
	return o.AppendBinary(append(buf, objectPresent))
}

func appendClock(buf []byte, c version.Clock) []byte { return version.AppendClock(buf, c) }

// decoder reads the encodings above; the first failure sticks in err and
// every later read returns a zero value.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errMalformed, msg)
	}
	d.buf = nil
}

// finish reports the first failure, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && len(d.buf) > 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 1 {
		d.fail("truncated")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) merkle() merkle.Message {
	raw := d.bytes()
	if d.err != nil {
		return merkle.Message{}
	}
	m, err := merkle.Unmarshal(raw)
	if err != nil {
		d.fail("merkle message: " + err.Error())
	}
	return m
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 8 {
		d.fail("truncated u64")
		return 0
	}
	v := binary.BigEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) int(field string) int {
	v := d.uvarint()
	if d.err == nil && v > maxInt {
		d.fail(field + " out of range")
		return 0
	}
	return int(v)
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
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	copy(b, d.buf)
	d.buf = d.buf[n:]
	return b
}

// optBytes reads optbytes: nil, or a copy that is non-nil even when empty.
func (d *decoder) optBytes() []byte {
	switch d.byte() {
	case 0:
		return nil
	case 1:
		b := d.bytes()
		if b == nil && d.err == nil {
			b = []byte{}
		}
		return b
	}
	d.fail("bad optional bytes marker")
	return nil
}

// flags reads a flags byte, refusing bits outside known.
func (d *decoder) flags(known byte) byte {
	f := d.byte()
	if d.err == nil && f&^known != 0 {
		d.fail("unknown flags")
		return 0
	}
	return f
}

func (d *decoder) object() *version.Object {
	switch d.byte() {
	case objectAbsent:
		return nil
	case objectPresent:
		o, rest, err := version.DecodeObject(d.buf)
		if err != nil {
			d.err, d.buf = fmt.Errorf("%w: object: %w", errMalformed, err), nil
			return nil
		}
		d.buf = rest
		return o
	}
	d.fail("bad object marker")
	return nil
}

func (d *decoder) clock() version.Clock {
	if d.err != nil {
		return nil
	}
	c, rest, err := version.DecodeClock(d.buf)
	if err != nil {
		d.err, d.buf = fmt.Errorf("%w: clock: %w", errMalformed, err), nil
		return nil
	}
	d.buf = rest
	return c
}

// objectSize is about the encoded size of o, enough to size a buffer once.
func objectSize(o *version.Object) int {
	if o == nil {
		return 1
	}
	n := 2 + clockSize(o.Clock) + binary.MaxVarintLen64
	for _, s := range o.Siblings {
		n += 8 + 3*binary.MaxVarintLen64 + 2*binary.MaxVarintLen32 + len(s.ContentType) + len(s.Value)
	}
	return n
}

func clockSize(c version.Clock) int {
	return binary.MaxVarintLen32 + len(c)*(8+binary.MaxVarintLen64)
}
