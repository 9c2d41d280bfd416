package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func histOf(ds ...time.Duration) *Histogram {
	var h Histogram
	for _, d := range ds {
		h.Record(d)
	}
	return &h
}

func TestReportForwardingRatioAndCPU(t *testing.T) {
	s := newClientStats()
	s.hists[statRead+routeDirect] = histOf(time.Millisecond, 2*time.Millisecond, 3*time.Millisecond)
	s.hists[statRead+routeForwarded] = histOf(2*time.Millisecond, 3*time.Millisecond, 4*time.Millisecond)
	s.ops, s.requests, s.failed = 6, 7, 1
	s.errors["GET 503 (quorum_unavailable)"] = 1
	m := measurement{
		stats:        s,
		elapsed:      2 * time.Second,
		generatorCPU: cpuTimes{user: 500 * time.Millisecond, sys: 500 * time.Millisecond},
		nodes:        []nodeUsage{{nodeProcess: nodeProcess{id: "n0", pid: 1}, cpu: cpuTimes{user: 2 * time.Second}}},
		machineBusy:  4 * time.Second,
	}
	var r report
	r.Cores = 2
	r.fillMeasurement(m)
	if len(r.Forwarding) != 1 || math.Abs(r.Forwarding[0].Ratio-1.5) > 0.01 {
		t.Fatalf("forwarding %+v, want read with ratio 3ms/2ms = 1.5", r.Forwarding)
	}
	if r.OpsPerSecond != 3 || r.RequestsPerSecond != 3.5 || r.Errors != 1 {
		t.Errorf("ops/s %v requests/s %v errors %d", r.OpsPerSecond, r.RequestsPerSecond, r.Errors)
	}
	if r.CPU.Generator.Cores != 0.5 || r.CPU.NodesTotal.Cores != 1 || *r.CPU.OtherCores != 0.5 {
		t.Errorf("cores: generator %v nodes %v other %v, want 0.5, 1, 0.5", r.CPU.Generator.Cores, r.CPU.NodesTotal.Cores, *r.CPU.OtherCores)
	}
	var table bytes.Buffer
	r.writeTable(&table)
	for _, want := range []string{"read forwarded", "1.50", "GET 503 (quorum_unavailable)", "100% busy"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := r.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not decode: %v", err)
	}
}

func TestProfileCollectorSavesEachNodesProfiles(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/debug/pprof/profile":
			if r.URL.Query().Get("seconds") != "1" {
				http.Error(w, "bad seconds", http.StatusBadRequest)
				return
			}
			w.Write([]byte("cpu"))
		case "/debug/pprof/goroutine":
			w.Write([]byte("goroutines"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	p, err := newProfileCollector(dir, []profileTarget{{id: "n0", peer: srv.URL}}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	p.start(context.Background(), 100*time.Millisecond)
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"n0.cpu.pprof": "cpu", "n0.goroutines.txt": "goroutines"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}

	// A node without the endpoint is reported, not ignored.
	p, _ = newProfileCollector(dir, []profileTarget{{id: "n1", peer: srv.URL + "/nothing"}}, time.Second)
	p.start(context.Background(), 10*time.Millisecond)
	if err := p.wait(); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("wait = %v, want a 404 named", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "n1.cpu.pprof")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed profile left a file (stat: %v)", err)
	}
}
