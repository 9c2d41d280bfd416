package version

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"time"
)

// Sibling is one live version of a key.
type Sibling struct {
	Dot         Dot
	Value       []byte
	ContentType string
	// Modified is when the coordinator accepted the write, in Unix nanoseconds.
	Modified int64
}

// Object is everything one replica knows of a key: the causal history it has
// seen (Clock) and the versions still live (Siblings, sorted by dot). The
// clock covers every sibling's dot. An object with siblings is live; one with
// a clock but no siblings is a tombstone.
type Object struct {
	Clock    Clock
	Siblings []Sibling
	// Deleted is when a tombstone's last sibling was deleted, in Unix
	// nanoseconds (the latest such time when copies merged), so that
	// replicas can purge it once a grace period has passed; 0 on live
	// objects, and on tombstones of unknown age. It is not part of the
	// object's identity: Equal and Digest ignore it.
	Deleted int64
}

// Live reports whether o holds at least one value.
func (o *Object) Live() bool { return o != nil && len(o.Siblings) > 0 }

// Context returns the causal context a client receives for o: a write
// carrying it supersedes every sibling o holds.
func (o *Object) Context() Clock {
	if o == nil {
		return nil
	}
	return o.Clock
}

// Write returns o with a new sibling minted by actor. Siblings covered by ctx
// are superseded; so is a sibling holding exactly the same value and content
// type (a retried request), since keeping both would only duplicate data.
// o may be nil (the key was never seen here). The caller must be the only
// writer minting dots for actor on this key (the coordinator's durable copy).
func (o *Object) Write(actor Actor, ctx Clock, value []byte, contentType string, now time.Time) (*Object, Dot) {
	cur := o.orEmpty()
	dot := Dot{Actor: actor, Counter: max(cur.Clock.Get(actor), ctx.Get(actor)) + 1}
	next := &Object{Clock: cur.Clock.Merge(ctx).With(dot)}
	for _, s := range cur.Siblings {
		if ctx.Covers(s.Dot) || (s.ContentType == contentType && bytes.Equal(s.Value, value)) {
			continue
		}
		next.Siblings = append(next.Siblings, s)
	}
	next.Siblings = append(next.Siblings, Sibling{
		Dot:         dot,
		Value:       value,
		ContentType: contentType,
		Modified:    now.UnixNano(),
	})
	sortSiblings(next.Siblings)
	return next, dot
}

// Delete returns o without the siblings ctx covers, its clock absorbing ctx.
// Siblings ctx does not cover were written concurrently and stay. When none
// stays, the tombstone records now as its deletion time.
func (o *Object) Delete(ctx Clock, now time.Time) *Object {
	cur := o.orEmpty()
	next := &Object{Clock: cur.Clock.Merge(ctx)}
	for _, s := range cur.Siblings {
		if !ctx.Covers(s.Dot) {
			next.Siblings = append(next.Siblings, s)
		}
	}
	if len(next.Siblings) == 0 {
		next.Deleted = max(cur.Deleted, now.UnixNano())
	}
	return next
}

// Merge combines two replicas' copies of a key. A sibling survives when both
// copies hold it or when the other copy has never seen its dot; a sibling
// one copy has seen and dropped was superseded. Either argument may be nil;
// the result is nil only when both are.
func Merge(a, b *Object) *Object {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := &Object{Clock: a.Clock.Merge(b.Clock)}
	i, j := 0, 0
	for i < len(a.Siblings) || j < len(b.Siblings) {
		switch {
		case j == len(b.Siblings) || (i < len(a.Siblings) && dotLess(a.Siblings[i].Dot, b.Siblings[j].Dot)):
			if s := a.Siblings[i]; !b.Clock.Covers(s.Dot) {
				out.Siblings = append(out.Siblings, s)
			}
			i++
		case i == len(a.Siblings) || dotLess(b.Siblings[j].Dot, a.Siblings[i].Dot):
			if s := b.Siblings[j]; !a.Clock.Covers(s.Dot) {
				out.Siblings = append(out.Siblings, s)
			}
			j++
		default: // the same write on both sides
			out.Siblings = append(out.Siblings, a.Siblings[i])
			i++
			j++
		}
	}
	if len(out.Siblings) == 0 {
		out.Deleted = max(a.Deleted, b.Deleted)
	}
	out.Siblings = dropDuplicateValues(out.Siblings)
	return out
}

// dropDuplicateValues keeps one of siblings that hold the same value and
// content type: the one with the lowest dot, so every replica keeps the
// same one. Such siblings come from a write retried through another
// coordinator (a load balancer's or a client's retry of a PUT whose first
// attempt was stored); the clock still covers both dots, so a write with
// the merged context supersedes the write either way.
func dropDuplicateValues(siblings []Sibling) []Sibling {
	out := siblings[:0:0]
	for _, s := range siblings {
		if !slices.ContainsFunc(out, func(o Sibling) bool {
			return o.ContentType == s.ContentType && bytes.Equal(o.Value, s.Value)
		}) {
			out = append(out, s)
		}
	}
	if len(out) == len(siblings) {
		return siblings
	}
	return out
}

// Equal reports whether two copies hold the same history and siblings.
// Siblings with the same dot are the same write, so values are not compared.
// A nil object equals an empty one: both say nothing is known.
func (o *Object) Equal(p *Object) bool {
	o, p = o.orEmpty(), p.orEmpty()
	return o.Clock.Equal(p.Clock) && slices.EqualFunc(o.Siblings, p.Siblings, func(a, b Sibling) bool { return a.Dot == b.Dot })
}

// Dominates reports whether o has seen everything p has, so that merging p
// into o changes nothing.
func (o *Object) Dominates(p *Object) bool {
	if p == nil {
		return true
	}
	return o.Equal(Merge(o, p))
}

// ETag is a strong validator for the object's state: equal for equal
// histories and siblings, different otherwise.
func (o *Object) ETag() string {
	sum := o.Digest()
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// Digest hashes the object's history and sibling dots; replicas holding
// equal objects have equal digests (anti-entropy compares these).
func (o *Object) Digest() [32]byte {
	h := sha256.New()
	var buf [binary.MaxVarintLen64 + 8]byte
	cur := o.orEmpty()
	h.Write(binary.AppendUvarint(buf[:0], uint64(len(cur.Clock))))
	for _, e := range cur.Clock {
		h.Write(appendEntry(buf[:0], e.Actor, e.Counter))
	}
	for _, s := range cur.Siblings {
		h.Write(appendEntry(buf[:0], s.Dot.Actor, s.Dot.Counter))
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// Modified returns the newest modification time of o's siblings, zero for
// tombstones.
func (o *Object) Modified() time.Time {
	var newest int64
	for _, s := range o.orEmpty().Siblings {
		newest = max(newest, s.Modified)
	}
	if newest == 0 {
		return time.Time{}
	}
	return time.Unix(0, newest)
}

func (o *Object) orEmpty() *Object {
	if o == nil {
		return &Object{}
	}
	return o
}

func dotLess(a, b Dot) bool {
	return a.Actor < b.Actor || (a.Actor == b.Actor && a.Counter < b.Counter)
}

func sortSiblings(s []Sibling) {
	slices.SortFunc(s, func(a, b Sibling) int {
		switch {
		case dotLess(a.Dot, b.Dot):
			return -1
		case dotLess(b.Dot, a.Dot):
			return 1
		}
		return 0
	})
}
