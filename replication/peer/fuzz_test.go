package peer

import (
	"bytes"
	"errors"
	"reflect"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// fuzzDecoder checks one decoder: it never panics, it allocates in
// proportion to its input, it rejects with errMalformed, and whatever it
// accepts encodes to bytes that decode to an equal value.
func fuzzDecoder[T any](f *testing.F, decode func([]byte) (T, error), encode func([]byte, T) []byte, seeds ...T) {
	for _, s := range seeds {
		f.Add(encode(nil, s))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			v   T
			err error
		)
		if n := allocated(func() { v, err = decode(data) }); n > maxDecodeAlloc(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(data), n)
		}
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("rejection %v does not wrap errMalformed", err)
			}
			return
		}
		again, err := decode(encode(nil, v))
		if err != nil {
			t.Fatalf("re-encoding of an accepted value does not decode: %v\nvalue %+v", err, v)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip changed the value:\n%+v\n%+v", v, again)
		}
	})
}

// maxDecodeAlloc bounds what decoding n bytes may allocate: a small multiple
// of n, plus the node list of a final merkle message (which names up to
// 2^MaxLeafBits nodes in a few bytes), plus slack for the runtime counting
// small allocations a span at a time.
func maxDecodeAlloc(n int) uint64 {
	return 64*uint64(n) + 4<<merkle.MaxLeafBits + 1<<20
}

// allocated returns about how many bytes fn allocated on the heap.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

func seedObjects() []*version.Object {
	var objs []*version.Object
	for _, o := range testObjects() {
		if o == nil || len(o.Siblings) == 0 || len(o.Siblings[0].Value) < 1<<10 {
			objs = append(objs, o)
		}
	}
	return objs
}

var seedClock = version.Clock{{Actor: 1, Counter: 3}, {Actor: 1 << 60, Counter: 1 << 40}}

func FuzzDecodeFetchRequest(f *testing.F) {
	fuzzDecoder(f, decodeFetchRequest, appendFetchRequest,
		replication.FetchRequest{},
		replication.FetchRequest{Partition: 255, Key: []byte("a/b//c")})
}

func FuzzDecodeFetchResponse(f *testing.F) {
	var seeds []replication.FetchResponse
	for _, o := range seedObjects() {
		seeds = append(seeds, replication.FetchResponse{Object: o})
	}
	fuzzDecoder(f, decodeFetchResponse, appendFetchResponse, seeds...)
}

func FuzzDecodeStoreRequest(f *testing.F) {
	var seeds []replication.StoreRequest
	for i, o := range seedObjects() {
		seeds = append(seeds, replication.StoreRequest{Partition: i, Key: []byte{byte(i), 'k'}, Object: o})
	}
	seeds = append(seeds, replication.StoreRequest{Partition: 1, Key: []byte("k"), Object: seedObjects()[0], HintFor: "node-c", RingVersion: 1<<63 | 5})
	fuzzDecoder(f, decodeStoreRequest, appendStoreRequest, seeds...)
}

func FuzzDecodeStoreResponse(f *testing.F) {
	fuzzDecoder(f, decodeStoreResponse, appendStoreResponse, replication.StoreResponse{})
}

func FuzzDecodeCoordinateRequest(f *testing.F) {
	fuzzDecoder(f, decodeCoordinateRequest, appendCoordinateRequest,
		replication.CoordinateRequest{Op: replication.OpGet, Key: []byte("k"), Quorum: 2},
		replication.CoordinateRequest{Op: replication.OpPut, Key: []byte("k"), Value: []byte("value"), ContentType: "text/plain", Context: seedClock, HasContext: true},
		replication.CoordinateRequest{Op: replication.OpDelete, Key: []byte("k"), HasContext: true})
}

func FuzzDecodeCoordinateResponse(f *testing.F) {
	seeds := []replication.CoordinateResponse{{}, {Context: seedClock}, {Object: seedObjects()[0], Siblings: 3}}
	for _, o := range seedObjects() {
		seeds = append(seeds, replication.CoordinateResponse{Object: o, Context: o.Context()})
	}
	fuzzDecoder(f, decodeCoordinateResponse, appendCoordinateResponse, seeds...)
}

func FuzzDecodeRangeRequest(f *testing.F) {
	fuzzDecoder(f, decodeRangeRequest, appendRangeRequest,
		replication.RangeRequest{},
		replication.RangeRequest{Partition: 255, After: []byte("a/b//c"), MaxBytes: 1 << 20, RingVersion: 42},
		replication.RangeRequest{Partition: 3, MaxBytes: 1, Buckets: &merkle.Diff{Depth: 10, Buckets: []uint32{0, 1, 2, 1023}}})
}

func FuzzDecodeExchangeRequest(f *testing.F) {
	tree := merkle.New(6)
	tree.Set([]byte("k"), merkle.Digest{}, merkle.Digest{1})
	other := merkle.New(6)
	deeper, _ := other.Reply(tree.Start())
	fuzzDecoder(f, decodeExchangeRequest, appendExchangeRequest,
		replication.ExchangeRequest{Partition: 7, Message: tree.Start()},
		replication.ExchangeRequest{Partition: 1 << 20, Message: deeper})
}

func FuzzDecodeExchangeResponse(f *testing.F) {
	fuzzDecoder(f, decodeExchangeResponse, appendExchangeResponse,
		replication.ExchangeResponse{Message: merkle.Message{LeafBits: 8, Depth: 8, Nodes: []uint32{5, 6, 200}, Done: true}},
		replication.ExchangeResponse{Message: merkle.Message{LeafBits: 8, Depth: 4, Nodes: []uint32{1, 2}, Hashes: []merkle.Hash{3, 4}}})
}

func FuzzDecodeRangeResponse(f *testing.F) {
	seeds := []replication.RangeResponse{{}, {Incomplete: true}, {Next: []byte{}}, {Items: []replication.RangeItem{{}}, Next: []byte("x")}}
	var items []replication.RangeItem
	for i, o := range seedObjects() {
		items = append(items, replication.RangeItem{Key: []byte{'k', byte(i)}, Object: o})
		seeds = append(seeds, replication.RangeResponse{Items: items, Next: items[len(items)-1].Key, Incomplete: i%2 == 0})
	}
	fuzzDecoder(f, decodeRangeResponse, appendRangeResponse, seeds...)
}

// TestEncodeDecodeEveryObject checks the codec beside the fuzzers, on the
// big object the seeds leave out.
func TestEncodeDecodeEveryObject(t *testing.T) {
	for name, o := range testObjects() {
		req := replication.StoreRequest{Partition: 3, Key: []byte(name), Object: o}
		got, err := decodeStoreRequest(appendStoreRequest(nil, req))
		if err != nil || got.Partition != 3 || string(got.Key) != name || !sameObject(got.Object, o) {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
	// Values no valid encoder produces are refused.
	for name, body := range map[string][]byte{
		"negative partition": appendFetchRequest(nil, replication.FetchRequest{Partition: -1}),
		"op zero":            appendCoordinateRequest(nil, replication.CoordinateRequest{}),
		"unsorted clock":     appendCoordinateResponse(nil, replication.CoordinateResponse{Context: version.Clock{{Actor: 2, Counter: 1}, {Actor: 1, Counter: 1}}}),
		"zero counter":       appendCoordinateResponse(nil, replication.CoordinateResponse{Context: version.Clock{{Actor: 2}}}),
		"object marker 2":    {2},
		"fetch trailing":     {0, 2},
		"store no version":   appendStoreRequest(nil, replication.StoreRequest{Key: []byte("k")})[:5],
		"range req version":  appendRangeRequest(nil, replication.RangeRequest{RingVersion: 9})[:6],
		"negative maxbytes":  appendRangeRequest(nil, replication.RangeRequest{MaxBytes: -1}),
		"range flags":        {0, 0, 0x80},
		"range next marker":  {0, 2, 0},
		"range count":        {3, 0, 0, 0, 0, 0, 0},
		"range huge count":   {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0},
		"range no flags":     {0, 0},
		"range item object":  {1, 0, 2, 0, 0},
	} {
		var err error
		switch {
		case name == "negative partition":
			_, err = decodeFetchRequest(body)
		case name == "op zero":
			_, err = decodeCoordinateRequest(body)
		case strings.HasPrefix(name, "fetch"):
			_, err = decodeFetchResponse(body)
		case name == "negative maxbytes" || name == "range req version":
			_, err = decodeRangeRequest(body)
		case name == "store no version":
			_, err = decodeStoreRequest(body)
		case strings.HasPrefix(name, "range"):
			_, err = decodeRangeResponse(body)
		default:
			_, err = decodeCoordinateResponse(body)
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRangeResponseEncoding pins the layout: nil and empty Next differ on
// the wire and survive decoding, and decoded pages share nothing with the
// input.
func TestRangeResponseEncoding(t *testing.T) {
	for _, c := range []struct {
		resp replication.RangeResponse
		want []byte
	}{
		{replication.RangeResponse{}, []byte{0, 0, 0}},
		{replication.RangeResponse{Next: []byte{}}, []byte{0, 1, 0, 0}},
		{replication.RangeResponse{Next: []byte("k"), Incomplete: true}, []byte{0, 1, 1, 'k', 1}},
		{replication.RangeResponse{Items: []replication.RangeItem{{Key: []byte("a")}}}, []byte{1, 1, 'a', 0, 0, 0}},
	} {
		body := appendRangeResponse(nil, c.resp)
		if !bytes.Equal(body, c.want) {
			t.Errorf("%+v encodes as %x, want %x", c.resp, body, c.want)
		}
		got, err := decodeRangeResponse(body)
		if err != nil || !sameRange(got, c.resp) {
			t.Errorf("%x decodes as %+v, %v", body, got, err)
		}
		clear(body)
		if !sameRange(got, c.resp) {
			t.Errorf("decoded %+v aliases its input", got)
		}
	}
	if body := appendFetchResponse(nil, replication.FetchResponse{}); !bytes.Equal(body, []byte{0}) {
		t.Errorf("empty fetch response encodes as %x", body)
	}
}
