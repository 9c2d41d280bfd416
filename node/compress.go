package node

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// Stored records: how an object is kept in the store's buckets.
//
// A record is one of
//
//	plain:      the version.Object encoding itself; its first byte is the
//	            object format byte (1 or 2, see version/encoding.go)
//	compressed: recordS2 (0xC5), then an S2 block of the plain encoding (a
//	            uvarint of the plain length, then the S2 stream)
//
// so every record written before compression existed still decodes, and a
// node may mix both forms freely. A record is compressed only when that
// saves space: the plain encoding is at least compressMinBytes long and the
// record shrinks by at least 1/compressMinGain. Compression is a storage
// matter only: peers exchange plain encodings (the peer codec marshals
// objects itself), so nodes never need to agree on it.
//
// decodeObject reads either form wherever objects are stored (hints
// included, which are still written plain). Neither form carries a
// checksum: as with plain records, a flipped bit inside a value may go
// unnoticed; anything that breaks the structure is an error, never a panic.
// Object format bytes must never take the value recordS2.
const (
	recordS2 byte = 0xC5

	// compressMinBytes is the smallest plain encoding worth compressing:
	// below it, S2's few bytes of header and the CPU cost buy little.
	compressMinBytes = 256
	// compressMinGain: a compressed record is kept only if it is at least
	// 1/8 (12.5%) smaller than the plain one.
	compressMinGain = 8
	// maxRecordPlainBytes bounds the plain length a compressed record may
	// claim, so a corrupt length cannot make the decoder allocate without
	// limit. It is the largest --max-value-bytes (64 MiB) plus room for a
	// clock, sibling headers and small siblings. Larger objects are stored
	// plain, so this bound never refuses a record this code wrote.
	maxRecordPlainBytes = 65 << 20

	// pooledBufBytes is the largest scratch buffer kept for reuse: a
	// record of the default --max-value-bytes (1 MiB) fits, bigger ones
	// get buffers of their own.
	pooledBufBytes = 2 << 20
)

// encodeRecord returns obj's stored record: compressed when that pays (see
// above), plain otherwise. The result is a fresh slice the store may keep.
func encodeRecord(obj *version.Object) []byte {
	plainBuf := getBuf(0)
	defer putBuf(plainBuf)
	plain := obj.AppendBinary((*plainBuf)[:0])
	*plainBuf = plain
	if len(plain) < compressMinBytes || len(plain) > maxRecordPlainBytes {
		return bytes.Clone(plain)
	}
	blockBuf := getBuf(1 + s2.MaxEncodedLen(len(plain)))
	defer putBuf(blockBuf)
	dst := (*blockBuf)[:cap(*blockBuf)]
	block := s2.Encode(dst[1:], plain)
	if 1+len(block) > len(plain)-len(plain)/compressMinGain {
		return bytes.Clone(plain)
	}
	out := make([]byte, 1+len(block))
	out[0] = recordS2
	copy(out[1:], block)
	return out
}

// decodeRecord decodes a stored record, plain or compressed. Every failure,
// including corrupt or truncated compressed data, is an error wrapping
// version.ErrMalformed; the result never aliases raw.
func decodeRecord(raw []byte) (*version.Object, error) {
	if len(raw) == 0 || raw[0] != recordS2 {
		return version.Unmarshal(raw)
	}
	block := raw[1:]
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed record: %v", version.ErrMalformed, err)
	}
	if n > maxRecordPlainBytes {
		return nil, fmt.Errorf("%w: compressed record claims %d bytes, over the %d limit",
			version.ErrMalformed, n, maxRecordPlainBytes)
	}
	buf := getBuf(n)
	defer putBuf(buf)
	plain, err := s2.Decode((*buf)[:0], block)
	if err != nil {
		return nil, fmt.Errorf("%w: compressed record: %v", version.ErrMalformed, err)
	}
	// Unmarshal copies what it keeps, so buf can go back to the pool.
	return version.Unmarshal(plain)
}

// recordPlainLen returns the length of the plain object encoding a stored
// record holds, without decoding it (0 when a compressed header is
// corrupt). Code that budgets what crosses the network, where objects
// travel plain, should count this rather than len(raw): a compressed
// record can be thousands of times smaller than what it decodes to.
func recordPlainLen(raw []byte) int {
	if len(raw) == 0 || raw[0] != recordS2 {
		return len(raw)
	}
	n, err := s2.DecodedLen(raw[1:])
	if err != nil {
		return 0
	}
	return n
}

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// getBuf returns a pooled buffer of capacity at least n.
func getBuf(n int) *[]byte {
	b := bufPool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	return b
}

// putBuf returns b to the pool unless it grew too big to keep.
func putBuf(b *[]byte) {
	if cap(*b) > pooledBufBytes {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
