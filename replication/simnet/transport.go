package simnet

import (
	"bytes"
	"context"
	"slices"

	"github.com/dynamo-kv/dynamo/replication"
	"github.com/dynamo-kv/dynamo/replication/merkle"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// transport is one node's view of the Network.
type transport struct {
	net  *Network
	from string
}

var _ replication.Transport = (*transport)(nil)

func (t *transport) Fetch(ctx context.Context, to string, req replication.FetchRequest) (replication.FetchResponse, error) {
	return call(ctx, t.net, t.from, to, KindFetch, req, copyFetchRequest, copyFetchResponse, replication.Handler.HandleFetch)
}

func (t *transport) Store(ctx context.Context, to string, req replication.StoreRequest) (replication.StoreResponse, error) {
	return call(ctx, t.net, t.from, to, KindStore, req, copyStoreRequest, copyStoreResponse, replication.Handler.HandleStore)
}

func (t *transport) Coordinate(ctx context.Context, to string, req replication.CoordinateRequest) (replication.CoordinateResponse, error) {
	return call(ctx, t.net, t.from, to, KindCoordinate, req, copyCoordinateRequest, copyCoordinateResponse, replication.Handler.HandleCoordinate)
}

func (t *transport) Range(ctx context.Context, to string, req replication.RangeRequest) (replication.RangeResponse, error) {
	return call(ctx, t.net, t.from, to, KindRange, req, copyRangeRequest, copyRangeResponse, replication.Handler.HandleRange)
}

func (t *transport) Exchange(ctx context.Context, to string, req replication.ExchangeRequest) (replication.ExchangeResponse, error) {
	return call(ctx, t.net, t.from, to, KindExchange, req, copyExchangeRequest, copyExchangeResponse, replication.Handler.HandleExchange)
}

// copyMessage round-trips a Merkle message through its wire encoding.
func copyMessage(m merkle.Message) (merkle.Message, error) { return merkle.Unmarshal(m.Marshal()) }

func copyExchangeRequest(r replication.ExchangeRequest) (replication.ExchangeRequest, error) {
	var err error
	r.Message, err = copyMessage(r.Message)
	return r, err
}

func copyExchangeResponse(r replication.ExchangeResponse) (replication.ExchangeResponse, error) {
	var err error
	r.Message, err = copyMessage(r.Message)
	return r, err
}

// copyObject round-trips o through its wire encoding, as a real network
// would, so the copy shares nothing and invalid objects fail here too.
func copyObject(o *version.Object) (*version.Object, error) {
	if o == nil {
		return nil, nil
	}
	return version.Unmarshal(o.Marshal())
}

func copyFetchRequest(r replication.FetchRequest) (replication.FetchRequest, error) {
	r.Key = bytes.Clone(r.Key)
	return r, nil
}

func copyFetchResponse(r replication.FetchResponse) (replication.FetchResponse, error) {
	var err error
	r.Object, err = copyObject(r.Object)
	return r, err
}

func copyStoreRequest(r replication.StoreRequest) (replication.StoreRequest, error) {
	var err error
	r.Key = bytes.Clone(r.Key)
	r.Object, err = copyObject(r.Object)
	return r, err
}

func copyStoreResponse(r replication.StoreResponse) (replication.StoreResponse, error) {
	return r, nil
}

func copyCoordinateRequest(r replication.CoordinateRequest) (replication.CoordinateRequest, error) {
	r.Key = bytes.Clone(r.Key)
	r.Value = bytes.Clone(r.Value)
	r.Context = slices.Clone(r.Context)
	return r, nil
}

func copyCoordinateResponse(r replication.CoordinateResponse) (replication.CoordinateResponse, error) {
	var err error
	r.Object, err = copyObject(r.Object)
	r.Context = slices.Clone(r.Context)
	return r, err
}

func copyRangeRequest(r replication.RangeRequest) (replication.RangeRequest, error) {
	r.After = bytes.Clone(r.After)
	if r.Buckets != nil {
		b := merkle.Diff{Depth: r.Buckets.Depth, Buckets: slices.Clone(r.Buckets.Buckets)}
		r.Buckets = &b
	}
	return r, nil
}

func copyRangeResponse(r replication.RangeResponse) (replication.RangeResponse, error) {
	items := make([]replication.RangeItem, len(r.Items))
	for i, it := range r.Items {
		obj, err := copyObject(it.Object)
		if err != nil {
			return r, err
		}
		items[i] = replication.RangeItem{Key: bytes.Clone(it.Key), Object: obj}
	}
	r.Items = items
	r.Next = bytes.Clone(r.Next)
	return r, nil
}
