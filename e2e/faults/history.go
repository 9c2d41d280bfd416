package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// Workload kinds, which decide how a key's history is checked.
const (
	WorkloadSet      = "set-add"
	WorkloadRegister = "register"
	WorkloadDelete   = "delete"
)

// maxErrorsKept bounds the unexpected errors a History keeps for the report.
const maxErrorsKept = 20

// History records every request of a run and its outcome. It is safe for
// concurrent use.
type History struct {
	mu sync.Mutex // guards every field below
	// keys holds each key's requests, in the order their answers came.
	keys   map[string]*keyHistory
	counts Counts
	errs   []string
}

// Counts are the requests of a run, by outcome.
type Counts struct {
	Reads, Writes, Deletes int
	// Acknowledged requests returned no error.
	Acknowledged int
	// Unavailable requests failed as the contract allows under faults (503).
	Unavailable int
	// Errors are every other failure: bugs.
	Errors int
	// Abandoned requests were cut off when the clients stopped; their
	// outcome is unknown, as for unavailable ones.
	Abandoned int
	// MaxSiblings is the most siblings a read or a replica held, and
	// MaxSiblingsKey the key that held them.
	MaxSiblings    int
	MaxSiblingsKey string
}

// siblings records that key was seen with n siblings.
func (c *Counts) siblings(key string, n int) {
	if n > c.MaxSiblings {
		c.MaxSiblings, c.MaxSiblingsKey = n, key
	}
}

// Operations is the number of requests sent.
func (c Counts) Operations() int { return c.Reads + c.Writes + c.Deletes }

// keyHistory is what clients sent for one key.
type keyHistory struct {
	workload string
	writes   []write
	// elements are the set-add elements sent, and whether a PUT holding
	// each was acknowledged.
	elements map[string]bool
}

// write is one PUT or DELETE.
type write struct {
	client int
	delete bool
	// value is what a PUT wrote; for set-add, the element it added.
	value string
	// sent is the context the request carried; the versions it covers
	// may be superseded by it, acknowledged or not.
	sent  version.Clock
	acked bool
	// dot names an acknowledged PUT's version.
	dot version.Dot
}

// NewHistory returns an empty history.
func NewHistory() *History { return &History{keys: map[string]*keyHistory{}} }

func (h *History) key(key, workload string) *keyHistory {
	kh, ok := h.keys[key]
	if !ok {
		kh = &keyHistory{workload: workload, elements: map[string]bool{}}
		h.keys[key] = kh
	}
	return kh
}

// outcome counts one request's result; stopping is the client's context.
func (h *History) outcomeLocked(stopping context.Context, what string, err error) {
	switch {
	case err == nil:
		h.counts.Acknowledged++
	case stopping.Err() != nil:
		h.counts.Abandoned++
	case errors.Is(err, ErrUnavailable):
		h.counts.Unavailable++
	default:
		h.counts.Errors++
		if len(h.errs) < maxErrorsKept {
			h.errs = append(h.errs, fmt.Sprintf("%s: %v", what, err))
		}
	}
}

// Read records a GET and what it saw.
func (h *History) Read(stopping context.Context, key string, r Read, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts.Reads++
	h.outcomeLocked(stopping, "get "+key, err)
	if err == nil {
		h.counts.siblings(key, len(r.Siblings))
	}
}

// Element records that a set-add client is about to send element in key's
// value, before the PUT: a failed PUT may still have landed.
func (h *History) Element(key, element string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kh := h.key(key, WorkloadSet)
	if _, ok := kh.elements[element]; !ok {
		kh.elements[element] = false
	}
}

// Put records a PUT of value to key with context sent (nil and hasContext
// false: blind) and its answer. For an acknowledged PUT it also records
// the dot that names the new version: the one entry by which got exceeds
// sent. element, when not empty, is the set-add element the PUT added; it
// is kept in place of the value (the whole set), which long runs could
// not afford to keep for every PUT.
func (h *History) Put(stopping context.Context, workload string, client int, key, value string, sent version.Clock, got version.Clock, err error, element string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts.Writes++
	if element != "" {
		value = element
	}
	w := write{client: client, value: value, sent: sent, acked: err == nil}
	if err == nil {
		dot, ok := newDot(sent, got)
		if !ok {
			err = fmt.Errorf("acknowledged context %s does not extend the context sent %s by exactly one write", got, sent)
			w.acked = false
		}
		w.dot = dot
	}
	h.outcomeLocked(stopping, "put "+key, err)
	kh := h.key(key, workload)
	kh.writes = append(kh.writes, w)
	if element != "" && w.acked {
		kh.elements[element] = true
	}
}

// Delete records a DELETE of what sent covers, and its answer.
func (h *History) Delete(stopping context.Context, client int, key string, sent version.Clock, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts.Deletes++
	h.outcomeLocked(stopping, "delete "+key, err)
	kh := h.key(key, WorkloadDelete)
	kh.writes = append(kh.writes, write{client: client, delete: true, sent: sent, acked: err == nil})
}

// newDot returns the dot a write minted: the one entry of got above sent.
func newDot(sent, got version.Clock) (version.Dot, bool) {
	var (
		dot   version.Dot
		found int
	)
	for _, e := range got {
		if e.Counter > sent.Get(e.Actor) {
			dot = version.Dot{Actor: e.Actor, Counter: e.Counter}
			found++
		}
	}
	return dot, found == 1 && got.Descends(sent)
}

// Keys returns every key a request was sent for, sorted.
func (h *History) Keys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return sortedKeys(h.keys)
}

// Counts returns the requests so far, by outcome.
func (h *History) Counts() Counts {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts
}

// Errors returns the first unexpected errors.
func (h *History) Errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.errs)
}
