package faults_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dynamo-kv/dynamo/e2e/faults"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// The checker's own tests: histories and replica copies built by hand, with
// the versions made by the version package as a coordinator would.

const actorA, actorB version.Actor = 0xa, 0xb

var (
	now     = time.Unix(1_700_000_000, 0)
	running = context.Background()
)

// write applies a PUT to obj as a coordinator would and returns the new
// object and the context the client receives.
func write(obj *version.Object, actor version.Actor, sent version.Clock, value string) (*version.Object, version.Clock) {
	next, dot := obj.Write(actor, sent, []byte(value), "text/plain", now)
	return next, sent.With(dot)
}

// everywhere is the copies of one key, the same on three replicas.
func everywhere(key string, obj *version.Object) faults.Copies {
	r := faults.ReadOf(obj)
	return faults.Copies{key: {"node-0": r, "node-1": r, "node-2": r}}
}

func TestCheckAcceptsSurvivingAndSupersededWrites(t *testing.T) {
	h := faults.NewHistory()
	obj, c1 := write(nil, actorA, nil, "v1")
	h.Put(running, faults.WorkloadRegister, 0, "r", "v1", nil, c1, nil, "")
	// v2 read v1 and replaced it; v3 was concurrent with both.
	obj, c2 := write(obj, actorA, c1, "v2")
	h.Put(running, faults.WorkloadRegister, 1, "r", "v2", c1, c2, nil, "")
	obj, c3 := write(obj, actorB, nil, "v3")
	h.Put(running, faults.WorkloadRegister, 2, "r", "v3", nil, c3, nil, "")

	r := faults.Check(h, everywhere("r", obj))
	if !r.OK() || r.AckedPuts != 3 || r.MaxSiblings != 2 {
		t.Fatalf("report %+v, want OK with 3 acknowledged puts and 2 siblings", r)
	}
}

func TestCheckCountsLostWrite(t *testing.T) {
	h := faults.NewHistory()
	_, c1 := write(nil, actorA, nil, "v1")
	h.Put(running, faults.WorkloadRegister, 0, "r", "v1", nil, c1, nil, "")
	// The replicas hold only a concurrent write: v1 is gone though no
	// request's context covered it.
	obj, c2 := write(nil, actorB, nil, "v2")
	h.Put(running, faults.WorkloadRegister, 1, "r", "v2", nil, c2, nil, "")

	r := faults.Check(h, everywhere("r", obj))
	if r.LostWrites != 1 || r.OK() {
		t.Fatalf("report %+v, want 1 lost write", r)
	}
	if !strings.Contains(r.Problems[0], "lost write: v1") {
		t.Fatalf("problem %q does not name v1", r.Problems[0])
	}
}

func TestCheckFailedWriteMaySupersede(t *testing.T) {
	h := faults.NewHistory()
	obj, c1 := write(nil, actorA, nil, "v1")
	h.Put(running, faults.WorkloadRegister, 0, "r", "v1", nil, c1, nil, "")
	// v2 carried v1's context and failed, but landed: v1 rightly gone.
	obj, _ = write(obj, actorA, c1, "v2")
	h.Put(running, faults.WorkloadRegister, 1, "r", "v2", c1, nil, faults.ErrUnavailable, "")

	if r := faults.Check(h, everywhere("r", obj)); !r.OK() || r.Unavailable != 1 {
		t.Fatalf("report %+v, want OK with 1 unavailable request", r)
	}
}

func TestCheckCountsUnexpectedErrors(t *testing.T) {
	h := faults.NewHistory()
	h.Put(running, faults.WorkloadRegister, 0, "r", "v1", nil, nil, errors.New("boom"), "")
	if r := faults.Check(h, everywhere("r", nil)); r.Errors != 1 || r.OK() {
		t.Fatalf("report %+v, want 1 unexpected error", r)
	}
}

func TestCheckCountsResurrectionNotConcurrentWrite(t *testing.T) {
	h := faults.NewHistory()
	obj, c1 := write(nil, actorA, nil, "d#0")
	h.Put(running, faults.WorkloadDelete, 0, "d", "d#0", nil, c1, nil, "")
	// A failed write the delete did not see: it may stay.
	concurrent, _ := write(nil, actorB, nil, "d#1")
	h.Put(running, faults.WorkloadDelete, 0, "d", "d#1", c1, nil, faults.ErrUnavailable, "")
	h.Delete(running, 0, "d", c1, nil)

	deleted := version.Merge(obj.Delete(c1, now), concurrent)
	if r := faults.Check(h, everywhere("d", deleted)); !r.OK() || r.Concurrent != 1 || r.Resurrected != 0 {
		t.Fatalf("report %+v, want the concurrent write kept and nothing resurrected", r)
	}
	// A copy that never saw the delete brings d#0 back.
	if r := faults.Check(h, everywhere("d", version.Merge(obj, concurrent))); r.Resurrected != 1 || r.OK() {
		t.Fatalf("report %+v, want 1 resurrected", r)
	}
	// Forgotten altogether (tombstone purged) is fine.
	if r := faults.Check(h, everywhere("d", nil)); !r.OK() || r.Purged != 1 {
		t.Fatalf("report %+v, want OK with the key purged", r)
	}
}

func TestCheckCountsPhantomValue(t *testing.T) {
	h := faults.NewHistory()
	obj, c1 := write(nil, actorA, nil, "v1")
	h.Put(running, faults.WorkloadRegister, 0, "r", "v1", nil, c1, nil, "")
	obj, _ = write(obj, actorB, nil, "never sent")

	if r := faults.Check(h, everywhere("r", obj)); r.Phantoms != 1 || r.OK() {
		t.Fatalf("report %+v, want 1 phantom", r)
	}
}

func TestCheckCountsLostSetElement(t *testing.T) {
	h := faults.NewHistory()
	h.Element("s", "a")
	obj, c1 := write(nil, actorA, nil, "a")
	h.Put(running, faults.WorkloadSet, 0, "s", "a", nil, c1, nil, "a")
	h.Element("s", "b")
	obj, c2 := write(obj, actorA, c1, "a,b")
	h.Put(running, faults.WorkloadSet, 1, "s", "a,b", c1, c2, nil, "b")
	// c was sent but not acknowledged: it may be missing.
	h.Element("s", "c")
	h.Put(running, faults.WorkloadSet, 2, "s", "a,b,c", c2, nil, faults.ErrUnavailable, "c")

	if r := faults.Check(h, everywhere("s", obj)); !r.OK() || r.AckedElements != 2 {
		t.Fatalf("report %+v, want OK with 2 acknowledged elements", r)
	}
	// A version that dropped b, written with a context covering a,b.
	bad, _ := write(obj, actorB, c2, "a")
	r := faults.Check(h, everywhere("s", bad))
	if r.LostElements != 1 || r.OK() {
		t.Fatalf("report %+v, want element b lost", r)
	}
}

func TestCheckRejectsAcknowledgementWithoutNewDot(t *testing.T) {
	h := faults.NewHistory()
	_, c1 := write(nil, actorA, nil, "v1")
	// The answer is the context sent: no write was minted.
	h.Put(running, faults.WorkloadRegister, 0, "r", "v2", c1, c1, nil, "")
	if c := h.Counts(); c.Errors != 1 || c.Acknowledged != 0 {
		t.Fatalf("counts %+v, want the acknowledgement counted as an unexpected error", c)
	}
}
