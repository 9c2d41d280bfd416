package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

// net/http answers some requests itself, before any handler runs, and writes
// those answers straight to the connection as plain text:
//
//   - 400 for a request it cannot parse: a malformed request line (such as
//     invalid percent-encoding in the path, "/keys/%zz"), a malformed header,
//     a bad Content-Length, a missing Host;
//   - 431 for a request line and headers over Server.MaxHeaderBytes;
//   - 501 for a Transfer-Encoding other than chunked;
//   - 505 for an HTTP version it does not serve;
//   - 417 for an Expect header other than 100-continue.
//
// net/http has no hook for any of them, and the contract wants a JSON error
// body on every 4xx and 5xx of /keys and /cluster routes. So the server's
// connections are wrapped, and a write that is exactly one of those answers
// is replaced by the JSON error body, with the same status except for 501
// and 505, which become 400: they answer bad input, which the contract
// answers with a 4xx, and a load balancer counts a 5xx against the node.
// net/http closes the connection right after each of them, so nothing
// follows on the wire.
//
// No answer of a handler is ever touched, for two reasons that each suffice
// for the answers net/http makes itself. Writes are only looked at between
// answers: from the connection's start, or from when net/http reports it idle
// (its previous answer wholly written), until a handler starts on the next
// request. net/http's own answers are only ever written then, and a handler's
// never is, so the bytes of a stored value, whatever they are, are never
// looked at. And the bytes must be exactly one of those answers. The first
// four are written by fmt.Fprintf, in one Write, as
//
//	HTTP/1.1 <code> <reason>[: <detail>]\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n<body>
//
// with <body> repeating "<code> <reason>[: <detail>]", or "Unsupported
// transfer encoding" for 501. The 417 is written as a handler's answer would
// be, Date included; it is recognised by its exact bytes.

// cannedHeaders is what net/http writes between the status line and the body
// of the answers it makes itself (errorHeaders in net/http's server.go).
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// The bytes of net/http's 417 around its Date, whose value is fixed-width.
const (
	expectationFailedHead = " 417 Expectation Failed\r\nConnection: close\r\nDate: "
	expectationFailedTail = "\r\nContent-Length: 0\r\n\r\n"
	httpDateLen           = len(http.TimeFormat)
)

// jsonErrorListener wraps every accepted connection in a jsonErrorConn.
type jsonErrorListener struct {
	net.Listener
	maxHeaderBytes int // the server's MaxHeaderBytes, for the 431 sentence
}

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	jc := &jsonErrorConn{Conn: c, maxHeaderBytes: l.maxHeaderBytes}
	jc.betweenAnswers.Store(true)
	return jc, nil
}

// jsonErrorConn replaces net/http's own plain-text error answers with JSON
// ones, as described above, and passes everything else through untouched.
type jsonErrorConn struct {
	net.Conn
	maxHeaderBytes int
	// betweenAnswers is set when no handler's answer can be on its way:
	// see trackIdle and markAnswering, the only writers besides Accept.
	betweenAnswers atomic.Bool
}

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	if !c.betweenAnswers.Load() {
		return c.Conn.Write(p)
	}
	answer := cannedAnswer(p, c.maxHeaderBytes)
	if answer == nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(answer); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite keeps net/http's half-close before it hangs up on a request
// it refused (431), which lets the client read the answer.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connKey is the request context key of the request's jsonErrorConn.
type connKey struct{}

// withConn is the server's ConnContext: it lets markAnswering find the
// connection a request came on.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// markAnswering wraps the server's handler: from the moment it runs, what is
// written on the connection is the handler's answer, until trackIdle.
func markAnswering(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*jsonErrorConn); ok {
			c.betweenAnswers.Store(false)
		}
		next.ServeHTTP(w, r)
	})
}

// trackIdle is called from the server's ConnState hook: net/http reports a
// connection idle once the previous answer has been wholly written and
// before it reads the next request.
func trackIdle(c net.Conn, state http.ConnState) {
	if jc, ok := c.(*jsonErrorConn); ok && state == http.StateIdle {
		jc.betweenAnswers.Store(true)
	}
}

// cannedAnswer returns the JSON answer that replaces p when p is one of
// net/http's own error answers, and nil otherwise.
func cannedAnswer(p []byte, maxHeaderBytes int) []byte {
	// Cheap refusals first: every other write is a handler's answer or
	// part of a body.
	if len(p) < len("HTTP/1.1 400 ") || !bytes.HasPrefix(p, []byte("HTTP/1.")) {
		return nil
	}
	if status, detail, ok := parseCanned(p); ok {
		return jsonAnswer(cannedError(status, detail, maxHeaderBytes))
	}
	if isExpectationFailed(p) {
		return jsonAnswer(&apiError{http.StatusExpectationFailed, codeBadRequest,
			"the Expect header asks for something this server does not do; only 100-continue is supported"})
	}
	return nil
}

// parseCanned recognises the fmt.Fprintf form and returns its status and
// the detail after the reason, if any.
func parseCanned(p []byte) (status int, detail string, ok bool) {
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok {
		return 0, "", false
	}
	line, body, ok := bytes.Cut(rest, []byte(cannedHeaders))
	if !ok || len(line) < 4 || line[3] != ' ' || bytes.ContainsAny(line, "\r\n") {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	afterReason, ok := bytes.CutPrefix(line[4:], []byte(http.StatusText(status)))
	if !ok {
		return 0, "", false
	}
	if len(afterReason) > 0 {
		d, ok := bytes.CutPrefix(afterReason, []byte(": "))
		if !ok {
			return 0, "", false
		}
		detail = string(d)
	}
	switch {
	case bytes.Equal(body, line):
	case status == http.StatusNotImplemented && detail == "" && string(body) == "Unsupported transfer encoding":
	default:
		return 0, "", false
	}
	return status, detail, true
}

// isExpectationFailed recognises net/http's 417, to HTTP/1.1 or 1.0.
func isExpectationFailed(p []byte) bool {
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1"))
	if !ok {
		rest, ok = bytes.CutPrefix(p, []byte("HTTP/1.0"))
	}
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(expectationFailedHead))
	return ok && len(rest) == httpDateLen+len(expectationFailedTail) &&
		string(rest[httpDateLen:]) == expectationFailedTail &&
		!bytes.ContainsAny(rest[:httpDateLen], "\r\n")
}

// cannedError is the error a canned answer of status stands for (see above
// for why 501 and 505 become 400); detail is net/http's own text, which
// names the fault ("missing required Host header", "invalid header value").
func cannedError(status int, detail string, maxHeaderBytes int) *apiError {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return &apiError{status, codeHeadersTooLarge, fmt.Sprintf(
			"the request line and headers are larger than this server accepts (about %d bytes)", maxHeaderBytes)}
	case http.StatusNotImplemented:
		return &apiError{http.StatusBadRequest, codeBadRequest,
			"the request's Transfer-Encoding is not supported; send the body with Content-Length or chunked"}
	case http.StatusHTTPVersionNotSupported:
		return &apiError{http.StatusBadRequest, codeBadRequest, "the request's HTTP version is not supported; use HTTP/1.1"}
	}
	msg := "the request is not valid HTTP/1.1: its request line or a header is malformed, " +
		"or its path is not valid percent-encoding (every % must start a two-digit hex escape)"
	if detail != "" {
		msg = "the request is not valid HTTP/1.1: " + detail
	}
	return &apiError{status, codeBadRequest, msg}
}

// jsonAnswer renders e as a whole HTTP/1.1 answer that closes the
// connection, as net/http's own did.
func jsonAnswer(e *apiError) []byte {
	body, _ := json.Marshal(errorBody{Error: e.msg, Code: e.code}) // strings only: cannot fail
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", e.status, http.StatusText(e.status), len(body), body)
}
