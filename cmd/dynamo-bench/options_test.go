package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.nodes != 1 || o.n != 1 || o.r != 1 || o.w != 1 {
		t.Errorf("default cluster: nodes=%d n=%d r=%d w=%d, want one node with n=r=w=1", o.nodes, o.n, o.r, o.w)
	}
	if o.workload.name != "A" || o.valueSize != 1024 || o.clients != 64 || o.dist != "zipfian" || o.blind || !o.preload {
		t.Errorf("defaults: %+v", o)
	}
}

func TestParseFlagsQuorumDefaultsForThreeNodes(t *testing.T) {
	o, err := parseFlags([]string{"--nodes=3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.n != 3 || o.r != 2 || o.w != 2 {
		t.Errorf("--nodes=3: n=%d r=%d w=%d, want 3/2/2", o.n, o.r, o.w)
	}
	o, err = parseFlags([]string{"--nodes=2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.n != 2 || o.r != 2 || o.w != 2 {
		t.Errorf("--nodes=2: n=%d r=%d w=%d, want 2/2/2", o.n, o.r, o.w)
	}
}

func TestParseFlagsTargets(t *testing.T) {
	o, err := parseFlags([]string{"--targets=http://127.0.0.1:8080, http://127.0.0.1:8090/", "--pids=10,11", "--workload=c", "--duration=3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.nodes != 0 || len(o.targets) != 2 || o.targets[1] != "http://127.0.0.1:8090" {
		t.Errorf("targets: nodes=%d %q", o.nodes, o.targets)
	}
	if len(o.pids) != 2 || o.pids[0] != 10 || o.workload.name != "C" || o.duration != 3*time.Second {
		t.Errorf("pids %v workload %s duration %s", o.pids, o.workload.name, o.duration)
	}
}

// Each bad command line fails with a message that names the flag and says
// what would be right.
func TestParseFlagsRejectsWithClearErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--nodes=3", "--targets=http://a:1"}, "--nodes and --targets exclude each other"},
		{[]string{"--targets=a:1"}, `"a:1" is not a node's base URL like http://127.0.0.1:8080`},
		{[]string{"--targets=http://a:1", "--n=3"}, "--n configures nodes this tool starts"},
		{[]string{"--targets=http://a:1", "--binary=/bin/x"}, "--binary configures nodes this tool starts"},
		{[]string{"--targets=http://a:1", "--pids=x"}, `--pids: "x" is not a process id`},
		{[]string{"--pids=1"}, "--pids is for --targets"},
		{[]string{"--nodes=0"}, "--nodes must be between 1 and 64, got 0"},
		{[]string{"--nodes=1", "--n=3"}, "--nodes=1 holds one replica of each key"},
		{[]string{"--nodes=3", "--n=4"}, "--n must be between 1 and --nodes (3), got 4"},
		{[]string{"--nodes=3", "--r=4"}, "--r must be between 1 and --n (3), got 4"},
		{[]string{"--nodes=3", "--w=0", "--r=0", "--n=2"}, ""}, // zero means the default
		{[]string{"--nodes=3", "--w=-1"}, "--w must be between 1 and --n (3), got -1"},
		{[]string{"--nodes=3", "--forwarding"}, "--forwarding needs a node that does not replicate the key: --nodes (3) must exceed --n (3)"},
		{[]string{"--targets=http://a:1", "--forwarding"}, "--forwarding needs at least two nodes"},
		{[]string{"--workload=F"}, "--workload must be A"},
		{[]string{"--clients=0"}, "--clients must be at least 1, got 0"},
		{[]string{"--keys=0"}, "--keys must be at least 1, got 0"},
		{[]string{"--value-size=-1"}, "--value-size must not be negative"},
		{[]string{"--distribution=latest"}, `--distribution must be zipfian or uniform, got "latest"`},
		{[]string{"--duration=0s"}, "--duration must be positive"},
		{[]string{"--warmup=-1s"}, "--warmup must not be negative"},
		{[]string{"--timeout=0s"}, "--timeout must be positive"},
		{[]string{"extra"}, "unexpected arguments: extra"},
	}
	for _, c := range cases {
		_, err := parseFlags(c.args, io.Discard)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: unexpected error %v", c.args, err)
		case c.want != "" && err == nil:
			t.Errorf("%q: accepted, want an error containing %q", c.args, c.want)
		case c.want != "" && !strings.Contains(err.Error(), c.want):
			t.Errorf("%q: error %q, want it to contain %q", c.args, err, c.want)
		}
	}
}

func TestParseFlagsReportsEveryProblemAtOnce(t *testing.T) {
	_, err := parseFlags([]string{"--clients=0", "--keys=0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--clients") || !strings.Contains(err.Error(), "--keys") {
		t.Errorf("error %v, want both --clients and --keys named", err)
	}
}
