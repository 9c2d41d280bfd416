package faults

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dynamo-kv/dynamo/replication/version"
)

// maxProblemsKept bounds the problems a Report describes in full.
const maxProblemsKept = 50

// Copies are the replicas' own copies of each key: key, then node id.
type Copies map[string]map[string]Read

// HintCounter is implemented by clusters that can tell how many hints their
// nodes still hold; convergence then also waits for them to be delivered,
// since a pending hint may still change the replicas.
type HintCounter interface {
	PendingHints() (int, error)
}

// WaitConverged polls every replica's own copy of every key until, in one
// pass, all replicas of each key hold the same versions (and no hint is
// pending, when c can tell), or until bound passes. It returns that pass's
// copies and how long it took; after bound, the error describes a key
// whose replicas still differ.
func WaitConverged(c Cluster, keys []string, bound time.Duration) (Copies, time.Duration, error) {
	start := time.Now()
	delay := time.Millisecond
	// first is where the last failed pass stopped: a key still apart
	// is likely to stay so, and checking it first keeps passes short.
	first := 0
	for {
		copies, at, err := convergedPass(c, keys, first)
		if err == nil {
			return copies, time.Since(start), nil
		}
		first = at
		if time.Since(start) > bound {
			if hc, ok := c.(HintCounter); ok {
				n, herr := hc.PendingHints()
				err = fmt.Errorf("%w\n(%d hints pending, %v)", err, n, herr)
			}
			return nil, time.Since(start), fmt.Errorf("not converged within %s: %w", bound, err)
		}
		// Pacing a poll, not waiting for an event.
		timer := time.NewTimer(delay)
		<-timer.C
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// convergedPass checks every key once, starting at keys[first]; on a key
// whose replicas differ it returns that key's index and why.
func convergedPass(c Cluster, keys []string, first int) (Copies, int, error) {
	copies := Copies{}
	if len(keys) == 0 {
		first = 0
	}
	for i := range keys {
		at := (first + i) % len(keys)
		key := keys[at]
		replicas, err := c.Replicas(key)
		if err != nil {
			return nil, at, fmt.Errorf("replicas of %q: %w", key, err)
		}
		held := map[string]Read{}
		for _, id := range replicas {
			r, err := c.Local(id, key)
			if err != nil {
				return nil, at, fmt.Errorf("%s's copy of %q: %w", id, key, err)
			}
			held[id] = r
		}
		for _, id := range replicas[1:] {
			if !held[id].Same(held[replicas[0]]) {
				return nil, at, fmt.Errorf("replicas of %q differ:\n%s", key, describeCopies(held))
			}
		}
		copies[key] = held
	}
	if hc, ok := c.(HintCounter); ok {
		n, err := hc.PendingHints()
		if err != nil {
			return nil, first, err
		}
		if n > 0 {
			return nil, first, fmt.Errorf("%d hints still pending", n)
		}
	}
	return copies, 0, nil
}

// Report is what the checker found.
type Report struct {
	Counts
	// Keys is how many keys the clients sent requests for.
	Keys int
	// AckedPuts, AckedDeletes and AckedElements are what must survive (or
	// stay deleted).
	AckedPuts, AckedDeletes, AckedElements int
	// LostWrites are acknowledged PUTs missing from a replica and
	// superseded by no request; LostElements acknowledged set-add elements
	// missing from a replica's union.
	LostWrites, LostElements int
	// Resurrected are live versions an acknowledged delete covered.
	Resurrected int
	// Phantoms are values or elements no client sent.
	Phantoms int
	// Concurrent are versions of deleted keys the delete did not see,
	// which rightly stay (PUTs that failed but landed).
	Concurrent int
	// Duplicates are values held under two dots at once by one replica.
	Duplicates int
	// Tombstones and Purged count the keys deleted (acknowledged) that
	// every replica holds as a tombstone, or has forgotten altogether.
	Tombstones, Purged int
	// Problems describes the first losses, resurrections and phantoms.
	Problems []string
}

// Lost is every acknowledged write or element lost.
func (r Report) Lost() int { return r.LostWrites + r.LostElements }

// OK reports whether nothing was lost, resurrected or made up, and no
// request failed unexpectedly.
func (r Report) OK() bool {
	return r.Lost() == 0 && r.Resurrected == 0 && r.Phantoms == 0 && r.Errors == 0
}

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < maxProblemsKept {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check compares the converged copies with what clients were told.
func Check(h *History, copies Copies) Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := Report{Keys: len(h.keys)}
	for _, key := range sortedKeys(h.keys) {
		kh := h.keys[key]
		for _, w := range kh.writes {
			switch {
			case w.acked && w.delete:
				r.AckedDeletes++
			case w.acked:
				r.AckedPuts++
			}
		}
		for _, acked := range kh.elements {
			if acked {
				r.AckedElements++
			}
		}
		held, ok := copies[key]
		if !ok {
			r.problem("%s: no replica copies to check", key)
			r.LostWrites++
			continue
		}
		checkKey(&r, key, kh, held)
	}
	r.Counts = h.counts
	for _, key := range sortedKeys(copies) {
		for _, c := range copies[key] {
			r.siblings(key, len(c.Siblings))
		}
	}
	return r
}

// checkKey checks every replica's copy of one key; a write lost (or a
// version resurrected) on several replicas counts once.
func checkKey(r *Report, key string, kh *keyHistory, held map[string]Read) {
	k := keyCheck{r: r, key: key, kh: kh, sent: map[string]*write{}, seen: map[string]bool{}}
	for i := range kh.writes {
		w := &kh.writes[i]
		if !w.delete {
			k.sent[w.value] = w
		}
		k.covered = k.covered.Merge(w.sent)
	}
	if slices.ContainsFunc(kh.writes, func(w write) bool { return w.delete && w.acked }) {
		gone, forgotten := true, true
		for _, got := range held {
			gone = gone && len(got.Siblings) == 0
			forgotten = forgotten && len(got.Context) == 0
		}
		switch {
		case gone && forgotten:
			r.Purged++
		case gone:
			r.Tombstones++
		}
	}
	for _, id := range sortedKeys(held) {
		got := held[id]
		k.values(id, got)
		if kh.workload == WorkloadSet {
			k.elements(id, got)
		}
		k.writes(id, got)
		k.deletes(id, got)
	}
}

// keyCheck is the check of one key's copies.
type keyCheck struct {
	r    *Report
	key  string
	kh   *keyHistory
	sent map[string]*write // PUTs by value: values are unique
	// covered merges every request's context: a version whose dot it
	// covers may have been superseded. (A request's own context never
	// covers the dot it mints.)
	covered version.Clock
	// seen holds the findings counted already, so that one found on
	// several replicas counts once.
	seen map[string]bool
}

// once reports whether finding is new.
func (k *keyCheck) once(finding string) bool {
	if k.seen[finding] {
		return false
	}
	k.seen[finding] = true
	return true
}

// values counts phantom and duplicate values. A set-add PUT is recorded by
// the element it added, so its values are checked element by element.
func (k *keyCheck) values(id string, got Read) {
	count := map[string]int{}
	for _, s := range got.Siblings {
		v := string(s.Value)
		if count[v]++; count[v] == 2 && k.once("duplicate "+v) {
			k.r.Duplicates++
		}
		if _, ok := k.sent[v]; !ok && k.kh.workload != WorkloadSet && k.once("phantom "+v) {
			k.r.Phantoms++
			k.r.problem("phantom: %s holds %q for %s, a value no client sent\n%s", id, v, k.key, describe(k.kh, got, -1))
		}
	}
}

// elements checks a set-add key: every acknowledged element is in the
// union of the siblings, and every element there was sent.
func (k *keyCheck) elements(id string, got Read) {
	union := SetElements(got.Siblings)
	for _, e := range union {
		if _, ok := k.kh.elements[e]; !ok && k.once("phantom element "+e) {
			k.r.Phantoms++
			k.r.problem("phantom: %s holds element %q in %s, which no client added", id, e, k.key)
		}
	}
	for _, e := range sortedKeys(k.kh.elements) {
		if _, ok := slices.BinarySearch(union, e); k.kh.elements[e] && !ok && k.once("lost element "+e) {
			k.r.LostElements++
			k.r.problem("lost element: %s of %s, acknowledged, missing on %s\n%s", e, k.key, id,
				describe(k.kh, got, slices.IndexFunc(k.kh.writes, func(w write) bool { return w.value == e })))
		}
	}
}

// writes checks that every acknowledged PUT is held, as a sibling, unless
// some other request's context covered it. A set-add PUT is recognised by
// its dot only, where the copy shows dots.
func (k *keyCheck) writes(id string, got Read) {
	dots := map[version.Dot]bool{}
	values := map[string]bool{}
	for _, s := range got.Siblings {
		if s.HasDot {
			dots[s.Dot] = true
		}
		values[string(s.Value)] = true
	}
	for i, w := range k.kh.writes {
		switch {
		case w.delete || !w.acked || dots[w.dot] || values[w.value]:
			continue
		case k.kh.workload == WorkloadSet && !got.Exact:
			continue
		case k.covered.Covers(w.dot):
			continue
		}
		if k.once(fmt.Sprintf("lost write %d", i)) {
			k.r.LostWrites++
			k.r.problem("lost write: %s of %s (dot %s, context sent %s), acknowledged, superseded by no request, missing on %s\n%s",
				w.value, k.key, w.dot, w.sent, id, describe(k.kh, got, i))
		}
	}
}

// deletes checks that no live sibling is one an acknowledged delete
// covered. Where the copy shows no dots, a sibling's dot is the one its
// PUT's acknowledgement named, and unknown for a PUT that failed.
func (k *keyCheck) deletes(id string, got Read) {
	for _, d := range k.kh.writes {
		if !d.delete || !d.acked {
			continue
		}
		for _, s := range got.Siblings {
			dot, known := s.Dot, s.HasDot
			if w, ok := k.sent[string(s.Value)]; !known && ok && w.acked {
				dot, known = w.dot, true
			}
			switch {
			case known && d.sent.Covers(dot):
				if k.once("resurrected " + string(s.Value)) {
					k.r.Resurrected++
					k.r.problem("resurrected: %s holds %s of %s (dot %s), which the acknowledged delete with context %s covered\n%s",
						id, s.Value, k.key, dot, d.sent, describe(k.kh, got, -1))
				}
			case k.once("concurrent " + string(s.Value)):
				k.r.Concurrent++
			}
		}
	}
}

// describeWrites is how many of a key's requests a problem shows: those
// around the one in question, or the last ones.
const describeWrites = 24

// describe renders one replica's copy of a key and the requests sent for
// it, around the one at focus (-1: the last ones), for a problem.
func describe(kh *keyHistory, got Read, focus int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  copy: context %s, siblings %s\n", got.Context, siblingsString(got.Siblings))
	from := max(0, len(kh.writes)-describeWrites)
	if focus >= 0 {
		from = max(0, min(focus-describeWrites/2, from))
	}
	to := min(len(kh.writes), from+describeWrites)
	if from > 0 {
		fmt.Fprintf(&b, "  (%d earlier requests)\n", from)
	}
	for _, w := range kh.writes[from:to] {
		verb := "put " + w.value
		switch {
		case w.delete:
			verb = "delete"
		case kh.workload == WorkloadSet:
			verb = "put adding " + w.value
		}
		outcome := "failed"
		if w.acked {
			outcome = "acked"
			if !w.delete {
				outcome += " as " + w.dot.String()
			}
		}
		fmt.Fprintf(&b, "  client %d %s with context %s: %s\n", w.client, verb, w.sent, outcome)
	}
	if to < len(kh.writes) {
		fmt.Fprintf(&b, "  (%d later requests)\n", len(kh.writes)-to)
	}
	return b.String()
}

func describeCopies(held map[string]Read) string {
	var b strings.Builder
	for _, id := range sortedKeys(held) {
		c := held[id]
		fmt.Fprintf(&b, "  %s: context %s, siblings %s\n", id, c.Context, siblingsString(c.Siblings))
	}
	return b.String()
}

func siblingsString(siblings []Sibling) string {
	parts := make([]string, len(siblings))
	for i, s := range siblings {
		v := string(s.Value)
		if len(v) > 40 {
			v = v[:20] + "..." + v[len(v)-17:]
		}
		if s.HasDot {
			parts[i] = fmt.Sprintf("%s@%s", v, s.Dot)
		} else {
			parts[i] = v
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// Summary is what a run prints at its end.
type Summary struct {
	Seed uint64
	Report
	// Convergence is how long replicas took to converge after the faults
	// were healed.
	Convergence time.Duration
	// Faults counts the faults injected, by kind.
	Faults map[Kind]int
}

func (s Summary) String() string {
	var b strings.Builder
	c := s.Counts
	fmt.Fprintf(&b, "seed %d\n", s.Seed)
	fmt.Fprintf(&b, "operations   %d (%d reads, %d writes, %d deletes) on %d keys\n", c.Operations(), c.Reads, c.Writes, c.Deletes, s.Keys)
	fmt.Fprintf(&b, "acknowledged %d (%d puts, %d deletes, %d set elements must survive)\n", c.Acknowledged, s.AckedPuts, s.AckedDeletes, s.AckedElements)
	fmt.Fprintf(&b, "failed       %d unavailable, %d errors, %d abandoned at stop\n", c.Unavailable, c.Errors, c.Abandoned)
	fmt.Fprintf(&b, "lost         %d (%d writes, %d set elements)\n", s.Lost(), s.LostWrites, s.LostElements)
	fmt.Fprintf(&b, "resurrected  %d (%d concurrent versions of deleted keys rightly kept)\n", s.Resurrected, s.Concurrent)
	fmt.Fprintf(&b, "deleted keys %d held as tombstones, %d purged\n", s.Tombstones, s.Purged)
	fmt.Fprintf(&b, "phantoms     %d, duplicate siblings %d\n", s.Phantoms, s.Duplicates)
	fmt.Fprintf(&b, "max siblings %d (%s)\n", c.MaxSiblings, c.MaxSiblingsKey)
	fmt.Fprintf(&b, "convergence  %.2fs\n", s.Convergence.Seconds())
	total := 0
	var kinds []string
	for _, k := range AllKinds {
		total += s.Faults[k]
		kinds = append(kinds, fmt.Sprintf("%s %d", k, s.Faults[k]))
	}
	fmt.Fprintf(&b, "faults       %d (%s)", total, strings.Join(kinds, ", "))
	return b.String()
}
