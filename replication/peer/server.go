package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/replication"
)

// Protocol constants shared by client and server.
const (
	// PathPrefix is where every peer route lives; the version is in the path.
	PathPrefix = "/peer/v1/"
	// MaxBodyBytes bounds a request or response body.
	MaxBodyBytes = 64 << 20

	// HeaderFrom carries the calling node's id.
	HeaderFrom = "X-Dynamo-From"
	// HeaderTimeout carries the caller's remaining time as a Go duration
	// ("1.5s"); the handler's context ends when it runs out.
	HeaderTimeout = "X-Dynamo-Timeout"

	contentType = "application/octet-stream"

	kindFetch      = "fetch"
	kindStore      = "store"
	kindCoordinate = "coordinate"
	kindRange      = "range"
	kindExchange   = "exchange"

	// pooledBufferMax keeps one huge body from pinning its buffer in a pool.
	pooledBufferMax = 1 << 20
)

// route decodes one request body, calls the handler and encodes its answer
// onto out.
type route func(ctx context.Context, h replication.Handler, from string, body, out []byte) ([]byte, error)

func serve[Req, Resp any](
	decode func([]byte) (Req, error),
	call func(replication.Handler, context.Context, string, Req) (Resp, error),
	encode func([]byte, Resp) []byte,
) route {
	return func(ctx context.Context, h replication.Handler, from string, body, out []byte) ([]byte, error) {
		req, err := decode(body)
		if err != nil {
			return nil, &requestError{err}
		}
		resp, err := call(h, ctx, from, req)
		if err != nil {
			return nil, err
		}
		return encode(out, resp), nil
	}
}

// server serves the peer protocol for one Handler.
type server struct {
	h          replication.Handler
	maxBody    int64 // MaxBodyBytes; tests lower it
	fetch      route
	store      route
	coordinate route
	rangeRoute route
	exchange   route
	// bufs holds *[]byte for request and response bodies; decoders copy
	// what they keep, so a buffer is free again once the answer is written.
	bufs sync.Pool
}

// NewServer returns an http.Handler that serves the peer protocol for h:
// POST PathPrefix+{fetch,store,coordinate,range,exchange}. It answers nothing else (404),
// so mounting it on the peer listener exposes no client route.
func NewServer(h replication.Handler) http.Handler {
	if h == nil {
		panic("peer: NewServer with a nil handler")
	}
	return &server{
		h:          h,
		maxBody:    MaxBodyBytes,
		fetch:      serve(decodeFetchRequest, replication.Handler.HandleFetch, appendFetchResponse),
		store:      serve(decodeStoreRequest, replication.Handler.HandleStore, appendStoreResponse),
		coordinate: serve(decodeCoordinateRequest, replication.Handler.HandleCoordinate, appendCoordinateResponse),
		rangeRoute: serve(decodeRangeRequest, replication.Handler.HandleRange, appendRangeResponse),
		exchange:   serve(decodeExchangeRequest, replication.Handler.HandleExchange, appendExchangeResponse),
		bufs:       sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }},
	}
}

func (s *server) route(kind string) route {
	switch kind {
	case kindFetch:
		return s.fetch
	case kindStore:
		return s.store
	case kindCoordinate:
		return s.coordinate
	case kindRange:
		return s.rangeRoute
	case kindExchange:
		return s.exchange
	}
	return nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	rt := s.route(kind)
	if !ok || rt == nil {
		writeError(w, http.StatusNotFound, CodeNotFound, "no peer route "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" not allowed, use POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != contentType {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != contentType {
			writeError(w, http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type must be "+contentType)
			return
		}
	}
	from := r.Header.Get(HeaderFrom)
	if from == "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "missing "+HeaderFrom)
		return
	}
	ctx := r.Context()
	if v := r.Header.Get(HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "bad "+HeaderTimeout+" "+strconv.Quote(v))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if r.ContentLength > s.maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body over %d bytes", s.maxBody))
		return
	}

	bufp := s.bufs.Get().(*[]byte)
	defer s.putBuffer(bufp)
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.maxBody), r.ContentLength, (*bufp)[:0])
	*bufp = body
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("body over %d bytes", s.maxBody))
			return
		}
		writeError(w, http.StatusBadRequest, CodeBadRequest, "reading body: "+err.Error())
		return
	}

	// The answer is encoded into the same buffer: the request was decoded
	// into copies, so its bytes are no longer needed.
	out, err := rt(ctx, s.h, from, body, body[:0])
	if err != nil {
		status, code := errorStatus(err)
		writeError(w, status, code, err.Error())
		return
	}
	*bufp = out
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out) // the caller has gone; nothing to tell it
}

func (s *server) putBuffer(bufp *[]byte) {
	if cap(*bufp) > pooledBufferMax {
		return
	}
	*bufp = (*bufp)[:0]
	s.bufs.Put(bufp)
}

// writeError answers with the code word on the first line and a message.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, code+"\n"+msg)
}

// readBody reads r to the end onto buf. When the length is known, buf is
// grown once, with a spare byte so that seeing EOF needs no growth.
func readBody(r io.Reader, size int64, buf []byte) ([]byte, error) {
	if size > 0 && int64(cap(buf)) <= size {
		buf = make([]byte, 0, size+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
