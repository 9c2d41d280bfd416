package node

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/dynamo-kv/dynamo/node/store"
	"github.com/dynamo-kv/dynamo/replication/version"
)

const (
	metaIdentity = "identity"
	metaMembers  = "members"
)

// identity is what a data dir remembers of the node that owns it.
type identity struct {
	ID string `json:"id"`
	// Actor mints this incarnation's dots; a new data dir gets a new one.
	Actor version.Actor `json:"actor"`
	// Joined orders the node in the ring (see Member.Joined).
	Joined int64 `json:"joined"`
}

// loadIdentity reads the data dir's identity, creating it on first start.
// A data dir belongs to one node id for good: starting it under another id
// would let two nodes mint the same dots.
func loadIdentity(db *store.DB, id string, now time.Time) (identity, bool, error) {
	raw, err := db.GetMeta(metaIdentity)
	if err != nil {
		return identity{}, false, err
	}
	if raw != nil {
		var ident identity
		if err := json.Unmarshal(raw, &ident); err != nil {
			return identity{}, false, fmt.Errorf("data dir identity is corrupt: %w", err)
		}
		if ident.ID != id {
			return identity{}, false, fmt.Errorf("data dir belongs to node %q, not %q: start with --id=%s or use another --data-dir", ident.ID, id, ident.ID)
		}
		return ident, false, nil
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return identity{}, false, err
	}
	ident := identity{ID: id, Actor: version.Actor(binary.BigEndian.Uint64(b[:]) | 1), Joined: now.UnixNano()}
	raw, _ = json.Marshal(ident)
	if err := db.PutMeta(metaIdentity, raw); err != nil {
		return identity{}, false, err
	}
	return ident, true, nil
}

const metaEpochs = "actor-epochs"

// actors mints the per-partition actor ids of this data dir. A partition's
// actor changes each time the node drops its copy of that partition (after
// the ring moved it elsewhere), because a node that later receives the
// partition again no longer holds the dots it minted before.
type actors struct {
	base version.Actor
	db   *store.DB

	mu     sync.Mutex // guards epochs
	epochs map[int]uint32
}

func loadActors(db *store.DB, base version.Actor) (*actors, error) {
	a := &actors{base: base, db: db, epochs: map[int]uint32{}}
	raw, err := db.GetMeta(metaEpochs)
	if err != nil || raw == nil {
		return a, err
	}
	return a, json.Unmarshal(raw, &a.epochs)
}

// For returns the actor that mints dots for partition p.
func (a *actors) For(p int) version.Actor {
	a.mu.Lock()
	epoch := a.epochs[p]
	a.mu.Unlock()
	if epoch == 0 {
		return a.base
	}
	// splitmix64 of (base, partition, epoch): distinct with overwhelming
	// probability from every other actor.
	x := uint64(a.base) ^ uint64(p)<<32 ^ uint64(epoch)
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return version.Actor(x ^ (x >> 31))
}

// retire gives partition p a new actor, durably, before its copy goes.
// The lock is not held while writing: writers of the store call For.
func (a *actors) retire(p int) error {
	a.mu.Lock()
	a.epochs[p]++
	raw, _ := json.Marshal(a.epochs)
	a.mu.Unlock()
	return a.db.PutMeta(metaEpochs, raw)
}
