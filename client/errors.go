package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrNotFound reports a read of a key with no live value: never written,
	// or deleted. Get and GetResolve return it with a Result whose Context is
	// the deleted history's token when there is one; a write carrying it does
	// not bring back what was deleted.
	ErrNotFound = errors.New("client: key not found")
	// ErrNoAddrs reports New called without a node address.
	ErrNoAddrs = errors.New("client: no node address given")
	// ErrTooManySiblings matches (errors.Is) the *Error of a write the node
	// refused, 409 too_many_siblings, because the key already holds the most
	// siblings --max-siblings allows. Nothing was stored. Read the key and
	// write back one resolved value with the read's context (GetResolve
	// does both); a write with a context is never refused for this.
	ErrTooManySiblings = errors.New("client: the key holds too many siblings")
)

// codeTooManySiblings is the error code of ErrTooManySiblings.
const codeTooManySiblings = "too_many_siblings"

// Error is an answer of a node that is not a success: its HTTP status and
// the stable code and sentence of the JSON error body (openapi.yaml: Error).
// A 503 is returned as an Error once every attempt got one.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the body's stable word to branch on ("bad_key",
	// "unavailable", ...); empty when the body was not the JSON error body
	// (an answer from a proxy in between, for instance).
	Code string
	// Message is the body's sentence for people.
	Message string
	// Node is the base URL of the node that answered.
	Node string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != "" {
		return fmt.Sprintf("client: %s answered %d (%s): %s", e.Node, e.Status, e.Code, msg)
	}
	return fmt.Sprintf("client: %s answered %d: %s", e.Node, e.Status, msg)
}

// Is reports whether target is the sentinel e's code stands for, so that
// errors.Is(err, ErrTooManySiblings) holds for a refused write.
func (e *Error) Is(target error) bool {
	return target == ErrTooManySiblings && e.Status == http.StatusConflict && e.Code == codeTooManySiblings
}

// Temporary reports whether trying again later may succeed: a 503.
func (e *Error) Temporary() bool { return e.Status == http.StatusServiceUnavailable }

// errorFrom builds the Error of a failed answer from its body.
func errorFrom(node string, status int, body []byte) *Error {
	e := &Error{Status: status, Node: node}
	var decoded struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(body, &decoded) == nil {
		e.Code, e.Message = decoded.Code, decoded.Error
	}
	return e
}
