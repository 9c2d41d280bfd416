package peer

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/dynamo-kv/dynamo/replication"
)

// Error codes: the first line of every non-200 body. They are part of the
// peer protocol; never change one, only add.
const (
	CodeUnavailable          = "unavailable"            // replication.ErrUnavailable
	CodeNoReplicas           = "no_replicas"            // replication.ErrNoReplicas
	CodeNotReplica           = "not_replica"            // replication.ErrNotReplica
	CodeTooManySiblings      = "too_many_siblings"      // replication.ErrTooManySiblings
	CodeNotReady             = "not_ready"              // replication.ErrNotReady
	CodeBadRequest           = "bad_request"            // the body or a header did not decode
	CodeInternal             = "internal"               // any other handler error
	CodeNotFound             = "not_found"              // no such route
	CodeMethodNotAllowed     = "method_not_allowed"     // not POST
	CodeTooLarge             = "too_large"              // body over MaxBodyBytes
	CodeUnsupportedMediaType = "unsupported_media_type" // Content-Type not application/octet-stream
)

// maxErrorMessage bounds the message part of an error body.
const maxErrorMessage = 4 << 10

// RemoteError is a peer's answer that was not a result: the request reached
// the node and was refused or failed there. It unwraps to the replication
// sentinel its code stands for, so errors.Is(err, replication.ErrUnavailable)
// holds across the network.
type RemoteError struct {
	Node    string // the id called
	Status  int    // HTTP status
	Code    string // one of the Code constants, or whatever an unknown server sent
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("peer %s: %s (%d %s)", e.Node, e.Message, e.Status, e.Code)
}

// Unwrap returns the sentinel behind e's code, nil when there is none.
func (e *RemoteError) Unwrap() error {
	switch e.Code {
	case CodeUnavailable:
		return replication.ErrUnavailable
	case CodeNoReplicas:
		return replication.ErrNoReplicas
	case CodeNotReplica:
		return replication.ErrNotReplica
	case CodeTooManySiblings:
		return replication.ErrTooManySiblings
	case CodeNotReady:
		return replication.ErrNotReady
	}
	return nil
}

// requestError marks a request the server could not decode.
type requestError struct{ err error }

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// errorStatus is the one place that maps an error to status and code.
func errorStatus(err error) (status int, code string) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return http.StatusBadRequest, CodeBadRequest
	case errors.Is(err, replication.ErrUnavailable):
		return http.StatusServiceUnavailable, CodeUnavailable
	case errors.Is(err, replication.ErrNoReplicas):
		return http.StatusServiceUnavailable, CodeNoReplicas
	case errors.Is(err, replication.ErrNotReplica):
		return http.StatusConflict, CodeNotReplica
	case errors.Is(err, replication.ErrTooManySiblings):
		return http.StatusConflict, CodeTooManySiblings
	case errors.Is(err, replication.ErrNotReady):
		return http.StatusServiceUnavailable, CodeNotReady
	}
	return http.StatusInternalServerError, CodeInternal
}
