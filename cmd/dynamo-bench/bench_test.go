package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dynamoBinary lets the end-to-end tests run a given dynamo binary instead
// of building ./cmd/dynamo: go test ./cmd/dynamo-bench -args -dynamo.binary=/path.
var dynamoBinary = flag.String("dynamo.binary", "", "dynamo binary for the end-to-end tests; empty builds ./cmd/dynamo")

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binary returns the dynamo binary the end-to-end tests start, building it
// with go build on first use.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real dynamo processes: skipped with -short")
	}
	if *dynamoBinary != "" {
		return *dynamoBinary
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "dynamo-bench-test-")
		if built.err == nil {
			built.path, built.err = buildDynamo(context.Background(), built.dir)
		}
	})
	if built.err != nil {
		t.Fatalf("building dynamo: %v", built.err)
	}
	return built.path
}

var clusterDirLine = regexp.MustCompile(`under (\S+)`)

func TestWorkloadAOnOneRealNode(t *testing.T) {
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{
		"--binary=" + bin, "--nodes=1", "--workload=A", "--clients=4", "--keys=200",
		"--duration=2s", "--warmup=200ms", "--json",
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, stdout.String())
	}
	if rep.Errors != 0 || len(rep.ErrorKinds) != 0 {
		t.Errorf("%d errors: %+v", rep.Errors, rep.ErrorKinds)
	}
	if rep.Ops == 0 || rep.OpsPerSecond <= 0 {
		t.Errorf("no operations counted: ops %d, %v ops/s", rep.Ops, rep.OpsPerSecond)
	}
	names := map[string]uint64{}
	for _, o := range rep.Operations {
		names[o.Name] = o.Count
		if o.P50Ms <= 0 || o.P50Ms > o.P99Ms || o.P99Ms > o.P999Ms || o.P999Ms > o.MaxMs {
			t.Errorf("%s: percentiles out of order: %+v", o.Name, o)
		}
	}
	if names[statRead] == 0 || names[statUpdate] == 0 || names[statUpdatePut] != names[statUpdate] {
		t.Errorf("operations %v: want reads and read-modify-write updates", names)
	}
	if rep.Cluster.N != 1 || rep.Cluster.R != 1 || rep.Cluster.W != 1 || !rep.Cluster.Started {
		t.Errorf("cluster %+v, want one started node with n=r=w=1", rep.Cluster)
	}
	if len(rep.CPU.Nodes) != 1 || rep.CPU.Nodes[0].Error != "" || rep.CPU.Nodes[0].UserSeconds+rep.CPU.Nodes[0].SysSeconds <= 0 {
		t.Errorf("node CPU %+v, want one node that used some", rep.CPU.Nodes)
	}
	if rep.CPU.Generator.UserSeconds+rep.CPU.Generator.SysSeconds <= 0 {
		t.Errorf("generator CPU %+v, want some", rep.CPU.Generator)
	}
	checkCleanedUp(t, stderr.String(), rep.CPU.Nodes[0].PID)
}

// A Ctrl-C during the run stops the nodes and removes their files.
func TestInterruptStopsTheClusterAndRemovesItsFiles(t *testing.T) {
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Cancel as soon as the workload starts, as Ctrl-C would.
	progress := &cancelOn{marker: "warm-up", cancel: cancel}
	err := run(ctx, []string{
		"--binary=" + bin, "--nodes=1", "--clients=2", "--keys=20", "--duration=1m",
	}, &bytes.Buffer{}, progress)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run returned %v, want context.Canceled\n%s", err, progress.String())
	}
	checkCleanedUp(t, progress.String(), 0)
}

// cancelOn collects progress lines and calls cancel once one contains marker.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel func()
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.Contains(string(p), c.marker) {
		c.cancel()
	}
	return c.buf.Write(p)
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// checkCleanedUp fails t if the cluster directory named in progress still
// exists or the process pid (when not 0) is still running.
func checkCleanedUp(t *testing.T, progress string, pid int) {
	t.Helper()
	m := clusterDirLine.FindStringSubmatch(progress)
	if m == nil {
		t.Fatalf("no cluster directory in the progress output:\n%s", progress)
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory %s still there after the run (stat: %v)", m[1], err)
	}
	if pid != 0 {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node process %d still running after the run", pid)
		}
	}
}
