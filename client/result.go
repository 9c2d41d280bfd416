package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"time"
)

// Result is what a read found.
type Result struct {
	// Key is the key read.
	Key string
	// Siblings are the live versions: one, or several written concurrently.
	// Empty with ErrNotFound.
	Siblings []Sibling
	// Context is the opaque token of everything this read covers; pass it
	// to Put or Delete (CausalContext) to supersede every sibling. It may be
	// set with ErrNotFound, for a key with a deleted history.
	Context string
	// ETag is the node's validator of the key's state ("" when the answer
	// had none).
	ETag string
}

// Sibling is one live version of a key.
type Sibling struct {
	Value []byte
	// ContentType is the type the value was written with
	// (application/octet-stream when none was given).
	ContentType string
	// LastModified is when the version was written, to the second; zero when
	// the node did not say (and in what GetResolve returns after a write).
	LastModified time.Time
}

// Conflict reports whether the read found several siblings.
func (r *Result) Conflict() bool { return len(r.Siblings) > 1 }

// Value returns the value when the read found exactly one version, and nil
// otherwise (none, or siblings to resolve).
func (r *Result) Value() []byte {
	if len(r.Siblings) != 1 {
		return nil
	}
	return r.Siblings[0].Value
}

// MergeFunc resolves siblings into one value and its content type. It is
// called with at least two siblings, in the node's order, and must not keep
// or change the slice. An error cancels the resolution.
type MergeFunc func(siblings []Sibling) (value []byte, contentType string, err error)

// readResult decodes a 200 or 300 answer of GET /keys/{key}.
func readResult(key string, status int, h http.Header, body []byte) (*Result, error) {
	res := &Result{Key: key, Context: h.Get("X-Context"), ETag: h.Get("ETag")}
	if status == http.StatusOK {
		res.Siblings = []Sibling{{
			Value:        body,
			ContentType:  contentTypeOr(h.Get("Content-Type")),
			LastModified: httpTime(h.Get("Last-Modified")),
		}}
		return res, nil
	}
	mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mediaType != "multipart/mixed" || params["boundary"] == "" {
		return nil, fmt.Errorf("client: a 300 answer of type %q, want multipart/mixed with a boundary", h.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("client: reading sibling %d: %w", len(res.Siblings)+1, err)
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("client: reading sibling %d: %w", len(res.Siblings)+1, err)
		}
		res.Siblings = append(res.Siblings, Sibling{
			Value:        value,
			ContentType:  contentTypeOr(p.Header.Get("Content-Type")),
			LastModified: httpTime(p.Header.Get("Last-Modified")),
		})
	}
	if len(res.Siblings) == 0 {
		return nil, errors.New("client: a 300 answer without siblings")
	}
	return res, nil
}

// contentTypeOr is a received Content-Type, or the store's default when the
// answer had none.
func contentTypeOr(ct string) string {
	if ct == "" {
		return "application/octet-stream"
	}
	return ct
}

// httpTime parses an HTTP date; zero when absent or malformed.
func httpTime(s string) time.Time {
	t, err := http.ParseTime(s)
	if err != nil {
		return time.Time{}
	}
	return t
}
