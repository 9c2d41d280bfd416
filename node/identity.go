package node

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
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
