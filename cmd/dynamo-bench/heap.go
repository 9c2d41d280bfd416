package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// heapMetric is the Go runtime's heap in use, as every node exports it on
// /metrics: spans with at least one live object, the figure to compare with
// a memory budget.
const heapMetric = "go_memstats_heap_inuse_bytes"

// nodeHeap is one node's Go heap at the end of a run.
type nodeHeap struct {
	Target         string `json:"target"`
	HeapInuseBytes int64  `json:"heap_inuse_bytes"`
	Error          string `json:"error,omitempty"`
}

// readHeaps asks every target's /metrics for its Go heap in use.
func readHeaps(ctx context.Context, client *http.Client, targets []string) []nodeHeap {
	out := make([]nodeHeap, len(targets))
	for i, t := range targets {
		out[i].Target = t
		v, err := readHeap(ctx, client, t)
		if err != nil {
			out[i].Error = err.Error()
			continue
		}
		out[i].HeapInuseBytes = v
	}
	return out
}

func readHeap(ctx context.Context, client *http.Client, target string) (int64, error) {
	status, body, err := fetch(ctx, client, target+"/metrics")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: status %d", status)
	}
	return parseMetric(body, heapMetric)
}

// parseMetric returns the value of an unlabelled sample name in Prometheus
// text format.
func parseMetric(text []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, fmt.Errorf("%s: bad value %q", name, rest)
		}
		return int64(v), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}
