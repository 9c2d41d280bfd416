package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The encoding of a Message:
//
//	format:byte (1) flags:byte leafbits:byte depth:byte runs hashes
//
//	flags   bit 0: Done; the other bits must be zero
//	runs    uvarint count, then per run of consecutive nodes
//	        skip:uvarint length-1:uvarint; the first run starts at skip,
//	        each next one at skip+1 past the end of the one before, so runs
//	        never touch and every node set has one encoding
//	hashes  8 bytes little-endian per node, present unless Done
//
// The nodes of a Reply come in runs (all the children of a differing node),
// so they cost a few bytes per run and a message is almost only its hashes.
// Uvarints must be minimal, and nothing may follow the hashes: the decoder
// accepts exactly what Marshal writes for valid messages.

// ErrMalformed reports a message that is not a valid encoding, or that does
// not fit the exchange it was given to.
var ErrMalformed = errors.New("merkle: malformed message")

const (
	formatV1 byte = 1
	flagDone byte = 1

	hashSize = 8
	// minRunSize is the fewest bytes a run takes: two one-byte uvarints.
	minRunSize = 2
)

// Marshal encodes m, which must be valid, as Start and Reply make them.
func (m Message) Marshal() []byte { return m.AppendBinary(nil) }

// AppendBinary appends m's encoding to buf.
func (m Message) AppendBinary(buf []byte) []byte {
	var flags byte
	if m.Done {
		flags |= flagDone
	}
	buf = append(buf, formatV1, flags, byte(m.LeafBits), byte(m.Depth))
	runs := 0
	for i, n := range m.Nodes {
		if i == 0 || n != m.Nodes[i-1]+1 {
			runs++
		}
	}
	buf = binary.AppendUvarint(buf, uint64(runs))
	next := uint64(0) // where the next run could start
	for i := 0; i < len(m.Nodes); {
		j := i + 1
		for j < len(m.Nodes) && m.Nodes[j] == m.Nodes[j-1]+1 {
			j++
		}
		buf = binary.AppendUvarint(buf, uint64(m.Nodes[i])-next)
		buf = binary.AppendUvarint(buf, uint64(j-i-1))
		next = uint64(m.Nodes[j-1]) + 2
		i = j
	}
	for _, h := range m.Hashes {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(h))
	}
	return buf
}

// Unmarshal decodes a message encoded by Marshal. It rejects anything else
// with ErrMalformed and never panics. It allocates in proportion to the
// input, plus 4 bytes per node listed (at most 2^MaxLeafBits nodes), and the
// result does not alias data.
func Unmarshal(data []byte) (Message, error) {
	d := decoder{buf: data}
	if d.byte() != formatV1 {
		return Message{}, d.failed("unknown format")
	}
	flags, leafBits, depth := d.byte(), d.byte(), d.byte()
	switch {
	case d.err != nil:
		return Message{}, d.err
	case flags&^flagDone != 0:
		return Message{}, d.failed("unknown flags")
	case leafBits > MaxLeafBits || depth > leafBits:
		return Message{}, d.failed("shape out of range")
	}
	m := Message{LeafBits: int(leafBits), Depth: int(depth), Done: flags&flagDone != 0}

	// First pass: check the runs and count their nodes, so nothing is
	// allocated for nodes whose hashes are missing.
	runs := d.uvarint()
	if d.err == nil && runs > uint64(len(d.buf)/minRunSize) {
		return Message{}, d.failed("run count exceeds the input")
	}
	width := uint64(1) << depth
	spans := make([][2]uint64, 0, runs) // start, end
	next, count := uint64(0), uint64(0)
	for range runs {
		skip, length := d.uvarint(), d.uvarint()
		if d.err != nil {
			return Message{}, d.err
		}
		// Both are below 2^64/4 once compared with width, so no sum overflows.
		if skip >= width || length >= width || next+skip+length+1 > width {
			return Message{}, d.failed("nodes out of range")
		}
		start := next + skip
		spans = append(spans, [2]uint64{start, start + length + 1})
		count += length + 1
		next = start + length + 2
	}
	if d.err != nil {
		return Message{}, d.err
	}
	switch {
	case m.Done && len(d.buf) != 0:
		return Message{}, d.failed("bytes after a final message")
	case !m.Done && count == 0:
		return Message{}, d.failed("no nodes")
	case !m.Done && uint64(len(d.buf)) != count*hashSize:
		return Message{}, d.failed("hash count differs from node count")
	}
	if count > 0 {
		m.Nodes = make([]uint32, 0, count)
		for _, s := range spans {
			for n := s[0]; n < s[1]; n++ {
				m.Nodes = append(m.Nodes, uint32(n))
			}
		}
	}
	if !m.Done {
		m.Hashes = make([]Hash, count)
		for i := range m.Hashes {
			m.Hashes[i] = Hash(binary.LittleEndian.Uint64(d.buf[i*hashSize:]))
		}
	}
	return m, nil
}

// decoder reads the encoding above; the first failure sticks in err and
// every later read returns zero.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) failed(msg string) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, msg)
	}
	d.buf = nil
	return d.err
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.buf) < 1 {
		d.failed("truncated")
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
	// A last byte of zero pads the value (0x81 0x00 for 1): binary.Uvarint
	// accepts it, Marshal never writes it.
	if n <= 0 || (n > 1 && d.buf[n-1] == 0) {
		d.failed("bad uvarint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}
