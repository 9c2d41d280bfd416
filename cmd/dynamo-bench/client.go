package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"
)

// kvClient sends the key-value requests of the benchmark. It holds one
// http.Transport for every client goroutine, with enough idle connections
// per node that each client keeps its own alive: no request pays for a TCP
// handshake once the warm-up is over.
type kvClient struct {
	http *http.Client
}

func newKVClient(clients int, timeout time.Duration) *kvClient {
	tr := &http.Transport{
		Proxy: nil, // a benchmark on loopback must not go through $HTTP_PROXY
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:        0, // no limit across nodes
		MaxIdleConnsPerHost: clients + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &kvClient{http: &http.Client{Transport: tr, Timeout: timeout}}
}

func (c *kvClient) close() { c.http.CloseIdleConnections() }

// result is the outcome of one HTTP request. kind is empty when the request
// succeeded, else what went wrong: "GET 503 (quorum_unavailable)",
// "PUT transport: connection refused".
type result struct {
	status  int
	context string // X-Context of the answer
	kind    string
	detail  string // the transport error's own words, for the report
}

func (r result) ok() bool { return r.kind == "" }

// keyURL is the URL of key on the node at base.
func keyURL(base, key string) string { return base + "/keys/" + url.PathEscape(key) }

// get reads key from the node at base. 200 and 300 (siblings) are
// successes; so is 404 when missingOK.
func (c *kvClient) get(ctx context.Context, base, key string, missingOK bool) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, keyURL(base, key), nil)
	if err != nil {
		return result{kind: "GET bad request: " + err.Error()}
	}
	return c.do(req, func(status int) bool {
		return status == http.StatusOK || status == http.StatusMultipleChoices ||
			(missingOK && status == http.StatusNotFound)
	})
}

// put writes value to key on the node at base, with xctx as X-Context when
// not empty.
func (c *kvClient) put(ctx context.Context, base, key string, value []byte, xctx string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, keyURL(base, key), bytes.NewReader(value))
	if err != nil {
		return result{kind: "PUT bad request: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if xctx != "" {
		req.Header.Set("X-Context", xctx)
	}
	return c.do(req, func(status int) bool { return status == http.StatusNoContent })
}

// do sends req and reads the answer's body to its end, so the connection
// goes back to the pool for the next request.
func (c *kvClient) do(req *http.Request, success func(int) bool) result {
	resp, err := c.http.Do(req)
	if err != nil {
		return result{kind: req.Method + " transport: " + transportErrorKind(err), detail: err.Error()}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode, context: resp.Header.Get("X-Context")}
	if success(resp.StatusCode) {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			r.kind = req.Method + " transport: reading body: " + transportErrorKind(err)
			r.detail = err.Error()
		}
		return r
	}
	// Errors are rare: read the stable code of the JSON error body.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	io.Copy(io.Discard, resp.Body)
	var e struct {
		Code string `json:"code"`
	}
	r.kind = fmt.Sprintf("%s %d", req.Method, resp.StatusCode)
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		r.kind += " (" + e.Code + ")"
	}
	return r
}

// transportErrorKind names a failed request's cause with a few fixed words,
// so errors group into a short list rather than one line per URL.
func transportErrorKind(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port free"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the node"
	}
	return "other"
}
