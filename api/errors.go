package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/dynamo-kv/dynamo/node"
)

// The stable words of the "code" field of an error body. Clients branch on
// these, so they never change meaning; openapi.yaml lists every one.
const (
	codeBadKey           = "bad_key"            // 400: empty, too long, bad percent-encoding or NUL
	codeBadQuorum        = "bad_quorum"         // 400: r or w not 1..N, one, quorum or all
	codeBadContext       = "bad_context"        // 400: X-Context is not a token this store issued
	codeBadQuery         = "bad_query"          // 400: local is not a boolean, or the query string is not valid percent-encoding
	codeBadBody          = "bad_body"           // 400: the request body could not be read
	codeBadRequest       = "bad_request"        // 400 (417 for Expect): not HTTP/1.1 this server parses, refused by net/http (connerrors.go)
	codeBodyTimeout      = "body_timeout"       // 408: the request body did not arrive within the server's body timeout
	codeHeadersTooLarge  = "headers_too_large"  // 431: request line and headers over the server's MaxHeaderBytes (connerrors.go)
	codeNotFound         = "not_found"          // 404: the key has no live value
	codeNoRoute          = "no_route"           // 404: no such path
	codeUnknownMember    = "unknown_member"     // 404: remove of an id that is not a member, or is gone
	codeMethodNotAllowed = "method_not_allowed" // 405
	codeMemberAlive      = "member_alive"       // 409: remove of a member that is up, or of this node
	codeTooManySiblings  = "too_many_siblings"  // 409: the write would leave the key with more than --max-siblings siblings
	codeValueTooLarge    = "value_too_large"    // 413
	codeInternal         = "internal"           // 500: a bug; details are logged, not sent
	codeUnavailable      = "unavailable"        // 503: too few replicas answered in time
	codeTimeout          = "timeout"            // 503: the request deadline passed
	codeNotReady         = "not_ready"          // 503: the node is starting or stopping
)

// apiError is an error already decided: its status, code and the sentence
// the client reads.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// errorFor is the one place that maps an error to what the client sees.
// Errors it does not recognise are internal: their text is logged by fail and
// never sent, since it may describe the node's internals.
func errorFor(err error) *apiError {
	var decided *apiError
	switch {
	case errors.As(err, &decided):
		return decided
	case errors.Is(err, node.ErrBadQuorum):
		return &apiError{http.StatusBadRequest, codeBadQuorum, "r and w must be between 1 and the effective N"}
	case errors.Is(err, node.ErrUnknownMember):
		return &apiError{http.StatusNotFound, codeUnknownMember, "no such member, or it was already removed"}
	case errors.Is(err, node.ErrMemberAlive):
		return &apiError{http.StatusConflict, codeMemberAlive, "the member is up (or is this node): ask it to leave with POST /cluster/leave on that node instead"}
	case errors.Is(err, node.ErrTooManySiblings):
		return &apiError{http.StatusConflict, codeTooManySiblings, "the key already holds the most siblings (concurrent versions) allowed, and this write would add one: read the key, then write back one resolved value with the X-Context the read returned"}
	case errors.Is(err, node.ErrNotReady):
		return &apiError{http.StatusServiceUnavailable, codeNotReady, "the node is starting or shutting down; try another node"}
	case errors.Is(err, node.ErrNoReplicas):
		return &apiError{http.StatusServiceUnavailable, codeUnavailable, "no replica of the key is reachable"}
	case errors.Is(err, node.ErrUnavailable):
		return &apiError{http.StatusServiceUnavailable, codeUnavailable, "not enough replicas answered in time; a write may exist on fewer replicas"}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusServiceUnavailable, codeTimeout, "the request did not complete before its deadline; a write may exist on fewer replicas"}
	default:
		return &apiError{http.StatusInternalServerError, codeInternal, "internal error"}
	}
}

// fail answers r with the error err maps to, logging internal errors.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := errorFor(err)
	if e.code == codeInternal {
		level := slog.LevelError
		if r.Context().Err() != nil {
			// The client went away; the error is most likely its echo.
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, e)
}

// writeError writes e as the JSON error body.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, errorBody{Error: e.msg, Code: e.code})
}

// writeJSON writes v as an application/json answer with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the types of this package are encoded, and none can fail.
		status = http.StatusInternalServerError
		body = []byte(`{"error":"internal error","code":"internal"}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client may be gone; nothing to do
}
