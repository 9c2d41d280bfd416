package node_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dynamo-kv/dynamo/node"
	"github.com/dynamo-kv/dynamo/node/nodetest"
	"github.com/dynamo-kv/dynamo/replication/version"
)

// syncBuffer is a log destination the nodes of a cluster share.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged lines that contain every one of words.
func (b *syncBuffer) lines(words ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for line := range strings.Lines(b.buf.String()) {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			out = append(out, line)
		}
	}
	return out
}

// siblingConfig is nodetest's configuration with small sibling limits and
// a logger writing to log.
func siblingConfig(warn, maxSiblings int, log *syncBuffer) node.Config {
	cfg := nodetest.DefaultConfig()
	cfg.SiblingWarn, cfg.MaxSiblings = warn, maxSiblings
	cfg.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

// metricValue sums the series of a counter on n's registry whose labels
// include every name=value pair of labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// A key receiving blind writes stops growing at MaxSiblings: every write
// past it is refused with ErrTooManySiblings and stores nothing, whether it
// reaches the coordinator directly or forwarded; a blind write repeating a
// sibling's value and a write with the read's context are accepted, and
// the latter resolves the key. The warnings are counted for each write and
// read past SiblingWarn but logged once.
func TestBlindWritesStopAtMaxSiblings(t *testing.T) {
	const (
		warn, maxSiblings = 5, 10
		writes            = 1000
		valueBytes        = 100
	)
	var log syncBuffer
	c := nodetest.MakeCluster(t, 4, siblingConfig(warn, maxSiblings, &log))
	key := []byte("hot")
	replicas := c.Replicas("node-0", key)
	var outsider string
	for _, id := range c.IDs() {
		if !slices.Contains(replicas, id) {
			outsider = id
		}
	}
	coordinator := c.Node(replicas[0])
	value := func(i int) []byte { return fmt.Appendf(nil, "%0*d", valueBytes, i) }

	refused := 0
	for i := range writes {
		// Every fourth write comes through the node that is not a replica
		// and forwards it.
		via := coordinator
		if i%4 == 3 {
			via = c.Node(outsider)
		}
		res, err := via.PutVersion(nodetest.Ctx(t), node.PutRequest{Key: key, Value: value(i), ContentType: "text/plain"})
		switch {
		case i < maxSiblings && err != nil:
			t.Fatalf("write %d via %s: %v", i, via.ID(), err)
		case i < maxSiblings && i > 0 && res.Siblings != i+1:
			t.Fatalf("write %d via %s left %d siblings, want %d", i, via.ID(), res.Siblings, i+1)
		case i == 0 && res.Siblings != 0:
			t.Fatalf("the first write reports %d siblings, want 0 (one version)", res.Siblings)
		case i >= maxSiblings && !errors.Is(err, node.ErrTooManySiblings):
			t.Fatalf("write %d via %s past the limit: err %v, want ErrTooManySiblings", i, via.ID(), err)
		case i >= maxSiblings && res.Context != nil:
			t.Fatalf("refused write %d returned a context", i)
		}
		if err != nil {
			refused++
		}
	}
	if refused != writes-maxSiblings {
		t.Fatalf("%d writes refused, want %d", refused, writes-maxSiblings)
	}

	// Nothing refused was stored anywhere: each replica holds the first
	// maxSiblings values, and the object stays as small as they make it.
	want := make([]string, maxSiblings)
	for i := range want {
		want[i] = string(value(i))
	}
	c.VerifyReplicas([][]byte{key}, 10*time.Second)
	for id, obj := range c.Local(key) {
		if got := values(obj); !slices.Equal(got, want) {
			t.Fatalf("%s holds %d siblings %q, want the first %d writes", id, len(got), got, maxSiblings)
		}
		if size := len(obj.Marshal()); size > maxSiblings*(valueBytes+64) {
			t.Fatalf("%s's object encodes to %d bytes, want at most %d", id, size, maxSiblings*(valueBytes+64))
		}
	}

	// A retry of a stored value supersedes its twin: accepted, no growth.
	res, err := coordinator.PutVersion(nodetest.Ctx(t), node.PutRequest{Key: key, Value: value(3), ContentType: "text/plain"})
	if err != nil || res.Siblings != maxSiblings {
		t.Fatalf("blind write of a value the key holds: %d siblings, %v; want %d, accepted", res.Siblings, err, maxSiblings)
	}

	obj := get(t, c.Node(outsider), string(key))
	if len(obj.Siblings) != maxSiblings {
		t.Fatalf("read %d siblings, want %d", len(obj.Siblings), maxSiblings)
	}
	res, err = c.Node(outsider).PutVersion(nodetest.Ctx(t), node.PutRequest{Key: key, Value: []byte("resolved"), Context: obj.Context(), HasContext: true})
	if err != nil || res.Siblings != 0 {
		t.Fatalf("write with the read's context: %d siblings, %v; want one version", res.Siblings, err)
	}
	if got := values(get(t, coordinator, string(key))); !slices.Equal(got, []string{"resolved"}) {
		t.Fatalf("after resolving: %q", got)
	}

	// Every refusal and warning is counted where the write was
	// coordinated; writes 6 to 10 and the retry left more than warn, and
	// so did the read.
	var refusals, putWarnings, getWarnings float64
	for _, id := range c.IDs() {
		reg := c.Node(id).Registry()
		refusals += metricValue(t, reg, "dynamo_sibling_refusals_total")
		putWarnings += metricValue(t, reg, "dynamo_sibling_warnings_total", "op", "put")
		getWarnings += metricValue(t, reg, "dynamo_sibling_warnings_total", "op", "get")
	}
	if refusals != writes-maxSiblings || putWarnings != maxSiblings-warn+1 || getWarnings != 1 {
		t.Fatalf("counted %v refusals, %v put and %v get warnings; want %d, %d and 1",
			refusals, putWarnings, getWarnings, writes-maxSiblings, maxSiblings-warn+1)
	}
	if got := metricValue(t, coordinator.Registry(), "dynamo_coordinator_requests_total", "op", "put", "outcome", "refused"); got == 0 {
		t.Fatal("no refused put among the coordinator's outcomes")
	}
	// Hundreds of warnings and refusals, a line for each kind per
	// coordinator at most.
	warned, refusedLines := log.lines("more siblings than --sibling-warn", "key=hot"), log.lines("refused a write", "key=hot")
	if len(warned) == 0 || len(warned) > 2 || len(refusedLines) == 0 || len(refusedLines) > 2 {
		t.Fatalf("%d warning and %d refusal lines logged, want 1 or 2 of each (a coordinator's first):\n%s%s",
			len(warned), len(refusedLines), strings.Join(warned, ""), strings.Join(refusedLines, ""))
	}
}

// Replicas merging what other coordinators accepted never refuse or drop a
// version: blind writes accepted on both sides of a partition, each under
// the limit, make a key with more siblings than MaxSiblings once healed.
// Every version survives on every replica; a further blind write is
// refused, a write superseding one sibling is not (it does not grow the
// set), and a write with the read's context resolves them all.
func TestMergesPastMaxSiblingsKeepEverything(t *testing.T) {
	const maxSiblings, perSide = 10, 8
	var log syncBuffer
	c := nodetest.MakeCluster(t, 3, siblingConfig(5, maxSiblings, &log))
	key := []byte("split")
	c.Partition([]string{"node-0"}, []string{"node-1"}, []string{"node-2"})
	var (
		want []string
		// firstOf1 is the context of node-1's first write: it covers
		// that one sibling and nothing else.
		firstOf1 version.Clock
	)
	for i := range perSide {
		for _, id := range []string{"node-0", "node-1"} {
			v := fmt.Sprintf("%s-%d", id, i)
			want = append(want, v)
			clock, err := c.Node(id).Put(nodetest.Ctx(t), node.PutRequest{Key: key, Value: []byte(v), W: 1})
			if err != nil {
				t.Fatalf("write %s while partitioned: %v", v, err)
			}
			if firstOf1 == nil && id == "node-1" {
				firstOf1 = clock
			}
		}
	}
	c.Heal()
	slices.Sort(want)

	// Hinted handoff and read repair merge the two sides everywhere.
	nodetest.Eventually(t, 20*time.Second, func() error {
		obj, err := c.Node("node-2").Get(nodetest.Ctx(t), node.GetRequest{Key: key, R: 3})
		if err != nil {
			return err
		}
		if got := values(obj); !slices.Equal(got, want) {
			return fmt.Errorf("read %d siblings, want %d", len(got), len(want))
		}
		for id, local := range c.Local(key) {
			if got := values(local); !slices.Equal(got, want) {
				return fmt.Errorf("%s holds %d siblings, want all %d", id, len(got), len(want))
			}
		}
		return nil
	})

	for _, id := range c.IDs() {
		_, err := c.Node(id).Put(nodetest.Ctx(t), node.PutRequest{Key: key, Value: []byte("one more")})
		if !errors.Is(err, node.ErrTooManySiblings) {
			t.Fatalf("blind write via %s to a key with %d siblings: %v, want ErrTooManySiblings", id, len(want), err)
		}
	}
	res, err := c.Node("node-1").PutVersion(nodetest.Ctx(t), node.PutRequest{Key: key, Value: []byte("node-1-0 again"), Context: firstOf1, HasContext: true})
	if err != nil || res.Siblings != len(want) {
		t.Fatalf("write superseding one of %d siblings: %d left, %v; want accepted, as many left", len(want), res.Siblings, err)
	}
	obj := get(t, c.Node("node-2"), string(key))
	if got := values(obj); len(got) != len(want) || !slices.Contains(got, "node-1-0 again") || slices.Contains(got, "node-1-0") {
		t.Fatalf("after superseding node-1-0: %q", got)
	}
	if _, err := c.Node("node-2").Put(nodetest.Ctx(t), node.PutRequest{Key: key, Value: []byte("merged"), Context: obj.Context(), HasContext: true}); err != nil {
		t.Fatalf("write with the read's context: %v", err)
	}
	c.VerifyReplicas([][]byte{key}, 10*time.Second)
	for id, local := range c.Local(key) {
		if got := values(local); !slices.Equal(got, []string{"merged"}) {
			t.Fatalf("%s holds %q after resolving", id, got)
		}
	}
}

// The limits are validated against each other.
func TestSiblingLimitsValidated(t *testing.T) {
	for _, tc := range []struct {
		warn, max int
		ok        bool
	}{
		{node.DefaultSiblingWarn, node.DefaultMaxSiblings, true},
		{1, 1, true},
		{10, 10, true},
		{11, 10, false},
		{0, 10, false},
		{1, 0, false},
	} {
		cfg := node.DefaultConfig()
		cfg.SiblingWarn, cfg.MaxSiblings = tc.warn, tc.max
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("sibling-warn %d, max-siblings %d: %v", tc.warn, tc.max, err)
		}
	}
}
