package ring

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// Errors returned by New. They are wrapped with the offending value.
var (
	ErrPartitions  = errors.New("ring: partitions must be at least 1")
	ErrReplication = errors.New("ring: replication factor must be at least 1")
	ErrEmptyID     = errors.New("ring: empty member id")
	ErrDuplicateID = errors.New("ring: duplicate member id")
)

// Hash maps a key to its position on the ring: the first 8 bytes of
// SHA-1(key), big endian. SHA-1 is used for its spread, not for security; it is
// fixed because every node and every client must agree on it forever.
func Hash(key []byte) uint64 {
	sum := sha1.Sum(key)
	return binary.BigEndian.Uint64(sum[:8])
}

// Ring assigns each of a fixed number of equal partitions of the hash space to
// one member. It is immutable after New, so it may be shared between
// goroutines without locking; a membership change builds a new Ring.
type Ring struct {
	members []string // join order
	owners  []int32  // owners[p] indexes members; nil when there are no members
	version uint64
}

// New builds the ring for the given members in join order. partitions must be
// at least 1; members may be empty, in which case every lookup returns no
// owners. Member ids must be distinct and non-empty. n is the replication
// factor whose preference lists the assignment keeps distinct where it can;
// it does not limit the n later passed to PreferenceList or Replicas.
//
// New replays every join, the k-th costing on the order of P*P/k steps: about
// half a millisecond for 256 partitions and 10 members. Build a ring when
// membership changes, never per request.
func New(partitions int, members []string, n int) (*Ring, error) {
	if partitions < 1 {
		return nil, fmt.Errorf("%w: %d", ErrPartitions, partitions)
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: %d", ErrReplication, n)
	}
	seen := make(map[string]bool, len(members))
	for _, id := range members {
		if id == "" {
			return nil, ErrEmptyID
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateID, id)
		}
		seen[id] = true
	}
	r := &Ring{members: slices.Clone(members)}
	if len(members) > 0 {
		r.owners = assign(partitions, r.members, n)
	} else {
		// Keep the partition count observable even when nobody owns anything.
		r.owners = make([]int32, partitions)
	}
	r.version = version(r)
	return r, nil
}

// Partitions returns the number of partitions, fixed for the ring's life.
func (r *Ring) Partitions() int { return len(r.owners) }

// Members returns a copy of the member ids in join order.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// PartitionOf returns the partition holding key. Multiplying instead of taking
// a modulus gives every partition a contiguous, equal range of hashes (to
// within one hash value), so partitions carry equal expected load.
func (r *Ring) PartitionOf(key []byte) int {
	hi, _ := bits.Mul64(Hash(key), uint64(len(r.owners)))
	return int(hi)
}

// Owner returns the member owning partition, or "" when the ring has no
// members. It panics if partition is out of range, like a slice index.
func (r *Ring) Owner(partition int) string {
	o := r.owners[partition]
	if len(r.members) == 0 {
		return ""
	}
	return r.members[o]
}

// PreferenceList returns the first n distinct members met walking the
// partitions partition, partition+1, ... (wrapping), coordinator first. With
// fewer than n members it returns all of them that own a partition, in walk
// order. It panics if partition is out of range.
func (r *Ring) PreferenceList(partition, n int) []string {
	_ = r.owners[partition] // an empty ring must reject a bad partition too
	var buf [8]int32        // room for any usual n without allocating
	idx := r.walk(buf[:0], partition, n)
	if len(idx) == 0 {
		return nil
	}
	ids := make([]string, len(idx))
	for i, o := range idx {
		ids[i] = r.members[o]
	}
	return ids
}

// Version identifies the assignment: rings with the same partition count and
// the same owner for every partition have the same version, and different
// assignments differ with overwhelming probability. Members owning no
// partition do not affect it, since they do not affect any lookup.
func (r *Ring) Version() uint64 { return r.version }

// Owned returns, ascending, the partitions whose Owner is id.
func (r *Ring) Owned(id string) []int {
	m := slices.Index(r.members, id)
	var ps []int
	if m < 0 {
		return ps
	}
	for p, o := range r.owners {
		if o == int32(m) {
			ps = append(ps, p)
		}
	}
	return ps
}

// Replicas returns, ascending, the partitions for which id is among the first
// n members of the preference list.
func (r *Ring) Replicas(id string, n int) []int {
	m := slices.Index(r.members, id)
	var ps []int
	if m < 0 {
		return ps
	}
	var buf []int32
	for p := range r.owners {
		buf = r.walk(buf[:0], p, n)
		if slices.Contains(buf, int32(m)) {
			ps = append(ps, p)
		}
	}
	return ps
}

// walk appends to dst the indexes of the first n distinct owners from
// partition p onwards. n is small, so a linear duplicate check beats a set.
func (r *Ring) walk(dst []int32, p, n int) []int32 {
	if len(r.members) == 0 {
		return dst
	}
	want := min(n, len(r.members))
	P := len(r.owners)
	for i := 0; i < P && len(dst) < want; i++ {
		o := r.owners[(p+i)%P]
		if !slices.Contains(dst, o) {
			dst = append(dst, o)
		}
	}
	return dst
}

// version hashes the partition count and the owner ids (not indexes, which
// depend on members that may own nothing) with SHA-256.
func version(r *Ring) uint64 {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(len(r.owners)))
	h.Write(b[:])
	if len(r.members) > 0 {
		for _, o := range r.owners {
			id := r.members[o]
			binary.BigEndian.PutUint64(b[:], uint64(len(id)))
			h.Write(b[:])
			h.Write([]byte(id))
		}
	}
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}
