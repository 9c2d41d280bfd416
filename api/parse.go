package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// MaxKeyBytes is the longest key accepted, counted after percent-decoding.
const MaxKeyBytes = 1024

// defaultContentType is stored for a PUT without Content-Type, and served for
// a value stored without one.
const defaultContentType = "application/octet-stream"

// keyFromPath returns the key of a request to prefix+"{key}": the rest of the
// path as the client escaped it, decoded by parseKey. RawPath is preferred to
// EscapedPath because EscapedPath re-escapes when RawPath is not a valid
// encoding, which would turn a malformed key into a different, valid one.
func keyFromPath(r *http.Request, prefix string) ([]byte, error) {
	p := r.URL.RawPath
	if p == "" {
		p = r.URL.EscapedPath()
	}
	escaped, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return nil, badKey("the path does not start with " + prefix)
	}
	return parseKey(escaped)
}

// parseKey percent-decodes an escaped key, once and without path cleaning, and
// checks it is 1 to MaxKeyBytes bytes with no NUL.
func parseKey(escaped string) ([]byte, error) {
	if escaped == "" {
		return nil, badKey("the key is empty")
	}
	// Every decoded byte takes 1 to 3 escaped ones: reject long input before
	// decoding it.
	if len(escaped) > 3*MaxKeyBytes {
		return nil, badKey(fmt.Sprintf("the key is longer than %d bytes", MaxKeyBytes))
	}
	key, err := url.PathUnescape(escaped)
	switch {
	case err != nil:
		return nil, badKey("the key is not valid percent-encoding")
	case len(key) > MaxKeyBytes:
		return nil, badKey(fmt.Sprintf("the key is %d bytes; the limit is %d", len(key), MaxKeyBytes))
	case strings.IndexByte(key, 0) >= 0:
		return nil, badKey("the key contains a NUL byte")
	}
	return []byte(key), nil
}

func badKey(why string) error {
	return &apiError{http.StatusBadRequest, codeBadKey, why}
}

// parseQuorum reads the query parameter name ("r" or "w"): a decimal integer,
// or one, quorum (a majority of n) or all (n), within 1..n. Absent means 0,
// the node's default.
func parseQuorum(q url.Values, name string, n int) (int, error) {
	vals, ok := q[name]
	if !ok {
		return 0, nil
	}
	bad := func(got string) error {
		return &apiError{http.StatusBadRequest, codeBadQuorum, fmt.Sprintf(
			"%s must be a number from 1 to %d (the effective N), or one, quorum or all; got %q", name, n, got)}
	}
	if len(vals) != 1 {
		return 0, bad(strings.Join(vals, "&"))
	}
	s := vals[0]
	var v int
	switch s {
	case "one":
		v = 1
	case "quorum":
		v = n/2 + 1
	case "all":
		v = n
	default:
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, bad(s)
		}
		var err error
		if v, err = strconv.Atoi(s); err != nil {
			return 0, bad(s) // out of int range, so above n anyway
		}
	}
	if v < 1 || v > n {
		return 0, bad(s)
	}
	return v, nil
}

// parseLocal reads ?local=: a boolean in strconv.ParseBool's spellings,
// false when absent.
func parseLocal(q url.Values) (bool, error) {
	if !q.Has("local") {
		return false, nil
	}
	s := q.Get("local")
	local, err := strconv.ParseBool(s)
	if err != nil {
		return false, &apiError{http.StatusBadRequest, codeBadQuery,
			fmt.Sprintf("local must be true or false; got %q", s)}
	}
	return local, nil
}

// parseContext reads X-Context. An absent header is no context; a present
// one, even empty, must be a token this store issued.
func parseContext(h http.Header) (clock version.Clock, has bool, err error) {
	vals := h.Values("X-Context")
	switch len(vals) {
	case 0:
		return nil, false, nil
	case 1:
		clock, err := version.DecodeContext(vals[0])
		if err != nil || !plausibleCounters(clock) {
			return nil, false, &apiError{http.StatusBadRequest, codeBadContext,
				"X-Context is not a context this store issued; send back the X-Context of a previous answer unchanged"}
		}
		return clock, true, nil
	default:
		return nil, false, &apiError{http.StatusBadRequest, codeBadContext, "X-Context was sent more than once"}
	}
}

// maxContextCounter bounds the counters of a client's X-Context. A counter
// counts the writes of one key by one coordinator, so no store ever issues
// one near it; a forged context that claims one near 2^64 would make the
// next write's counter wrap to 0, minting a version that no context can
// cover and that the store's own encoding refuses: the key could never be
// read, resolved or deleted again.
const maxContextCounter = 1 << 62

// plausibleCounters reports whether every counter of c is one a store could
// have issued.
func plausibleCounters(c version.Clock) bool {
	for _, e := range c {
		if e.Counter > maxContextCounter {
			return false
		}
	}
	return true
}

// parseQuery parses the query string strictly. http.Request.URL.Query
// silently drops a parameter that is not valid percent-encoding, so a PUT
// with "w=%zz" would be written at the default W instead of refused.
func parseQuery(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, codeBadQuery,
			"the query string is not valid: every % must start a two-digit hex escape, and parameters are separated by &"}
	}
	return q, nil
}

// readValue reads a PUT body of at most limit bytes. A Content-Length over the
// limit is refused before reading anything.
func readValue(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	tooLarge := &apiError{http.StatusRequestEntityTooLarge, codeValueTooLarge,
		fmt.Sprintf("the value is larger than the limit of %d bytes", limit)}
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var over *http.MaxBytesError
	switch {
	case errors.As(err, &over):
		return nil, tooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The server's body deadline passed (bodyDeadline in server.go).
		return nil, &apiError{http.StatusRequestTimeout, codeBodyTimeout,
			"the request body did not arrive in time; send it without pausing"}
	case err != nil:
		return nil, &apiError{http.StatusBadRequest, codeBadBody, "the request body could not be read: " + err.Error()}
	}
	return value, nil
}

// contentTypeOf is what a value's Content-Type header says: the stored type,
// or the default when none was stored or it cannot travel in a header line.
func contentTypeOf(stored string) string {
	ct := strings.Trim(stored, " \t")
	if ct == "" {
		return defaultContentType
	}
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return defaultContentType
		}
	}
	return ct
}

// noneMatch reports whether an If-None-Match header list matches etag under
// the weak comparison of RFC 9110 section 13.1.2: "*", or any listed tag
// with the same opaque value, W/ or not. A malformed list matches nothing.
func noneMatch(header []string, etag string) bool {
	for _, line := range header {
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				return true
			}
			s = strings.TrimPrefix(s, "W/")
			if len(s) == 0 || s[0] != '"' {
				break
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				break
			}
			if s[:end+2] == etag {
				return true
			}
			s = s[end+2:]
		}
	}
	return false
}
