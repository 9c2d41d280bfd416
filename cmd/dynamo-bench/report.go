package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"
)

// report is everything a run found, in the shape --json prints.
type report struct {
	Date            string        `json:"date"`  // RFC 3339, when the measured window ended
	Cores           int           `json:"cores"` // logical CPUs of the machine (nproc)
	Workload        string        `json:"workload"`
	ReadFraction    float64       `json:"read_fraction"`
	ReadModifyWrite bool          `json:"read_modify_write"` // updates read first and write with the context
	Distribution    string        `json:"distribution"`
	Keys            int           `json:"keys"`
	ValueBytes      int           `json:"value_bytes"`
	Clients         int           `json:"clients"`
	WarmupSeconds   float64       `json:"warmup_seconds"`
	Cluster         clusterReport `json:"cluster"`
	PreloadSeconds  float64       `json:"preload_seconds,omitempty"`

	ElapsedSeconds    float64       `json:"elapsed_seconds"` // the measured window
	Ops               int64         `json:"ops"`             // operations that succeeded
	OpsPerSecond      float64       `json:"ops_per_second"`
	Requests          int64         `json:"requests"` // HTTP requests, failed ones included
	RequestsPerSecond float64       `json:"requests_per_second"`
	Errors            int64         `json:"errors"`        // operations that failed
	SiblingReads      int64         `json:"sibling_reads"` // GETs answered 300 Multiple Choices
	ErrorKinds        []errorReport `json:"error_kinds"`
	Operations        []opReport    `json:"operations"`
	Forwarding        []forwardRow  `json:"forwarding,omitempty"`
	CPU               cpuReport     `json:"cpu"`
	Heap              []nodeHeap    `json:"heap"` // each target's Go heap in use at the end
}

type clusterReport struct {
	Started bool     `json:"started"` // by this tool, as opposed to --targets
	Nodes   int      `json:"nodes"`
	Targets []string `json:"targets"`
	N       int      `json:"n"`
	R       int      `json:"r"`
	W       int      `json:"w"`
}

type errorReport struct {
	Kind    string `json:"kind"` // "PUT 503 (quorum_unavailable)", "GET transport: timeout"
	Count   int64  `json:"count"`
	Example string `json:"example,omitempty"` // a transport error's message
}

// opReport is the latency of one kind of operation or request, in
// milliseconds.
type opReport struct {
	Name         string  `json:"name"`
	Count        uint64  `json:"count"`
	OpsPerSecond float64 `json:"ops_per_second"`
	MeanMs       float64 `json:"mean_ms"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
}

// forwardRow compares the median latency of an operation sent to a node
// that is not a replica of the key with one sent to the key's coordinator.
type forwardRow struct {
	Name           string  `json:"name"`
	DirectP50Ms    float64 `json:"direct_p50_ms"`
	ForwardedP50Ms float64 `json:"forwarded_p50_ms"`
	Ratio          float64 `json:"ratio"` // forwarded / direct
}

type cpuReport struct {
	Generator procCPU   `json:"generator"`
	Nodes     []nodeCPU `json:"nodes"`
	// NodesTotal sums Nodes; zero when no node's CPU was known.
	NodesTotal procCPU `json:"nodes_total"`
	// MachineCores is how many cores every process on the machine kept
	// busy (from /proc/stat), and OtherCores the part neither this tool
	// nor the nodes used: other work sharing the machine. Both are absent
	// when /proc/stat cannot be read.
	MachineCores *float64 `json:"machine_cores,omitempty"`
	OtherCores   *float64 `json:"other_cores,omitempty"`
}

// procCPU is CPU time over the measured window. Cores is (user+sys)/elapsed:
// 1.0 is one core kept busy all the time.
type procCPU struct {
	UserSeconds float64 `json:"user_seconds"`
	SysSeconds  float64 `json:"sys_seconds"`
	Cores       float64 `json:"cores"`
}

type nodeCPU struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
	procCPU
	RSSBytes int64  `json:"rss_bytes"`
	Error    string `json:"error,omitempty"`
}

func toProcCPU(c cpuTimes, elapsed time.Duration) procCPU {
	return procCPU{
		UserSeconds: c.user.Seconds(),
		SysSeconds:  c.sys.Seconds(),
		Cores:       c.total().Seconds() / elapsed.Seconds(),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// statOrder is the order operations are listed in.
var statOrder = []string{statRead, statUpdate, statUpdateGet, statUpdatePut}

// fillMeasurement puts what a run measured into r.
func (r *report) fillMeasurement(m measurement) {
	s := m.stats
	secs := m.elapsed.Seconds()
	r.ElapsedSeconds = secs
	r.Ops, r.Requests, r.Errors, r.SiblingReads = s.ops, s.requests, s.failed, s.siblings
	r.OpsPerSecond = float64(s.ops) / secs
	r.RequestsPerSecond = float64(s.requests) / secs

	r.ErrorKinds = []errorReport{}
	for kind, n := range s.errors {
		r.ErrorKinds = append(r.ErrorKinds, errorReport{Kind: kind, Count: n, Example: s.details[kind]})
	}
	sort.Slice(r.ErrorKinds, func(i, j int) bool {
		a, b := r.ErrorKinds[i], r.ErrorKinds[j]
		return a.Count > b.Count || (a.Count == b.Count && a.Kind < b.Kind)
	})

	r.Operations = []opReport{}
	add := func(name string) {
		h := s.hists[name]
		if h == nil || h.Count() == 0 {
			return
		}
		r.Operations = append(r.Operations, opReport{
			Name:         name,
			Count:        h.Count(),
			OpsPerSecond: float64(h.Count()) / secs,
			MeanMs:       ms(h.Mean()),
			P50Ms:        ms(h.Quantile(0.50)),
			P99Ms:        ms(h.Quantile(0.99)),
			P999Ms:       ms(h.Quantile(0.999)),
			MaxMs:        ms(h.Max()),
		})
	}
	for _, name := range statOrder {
		add(name) // absent in forwarding mode, where every name has a route
	}
	if s.hists[statRead+routeDirect] != nil || s.hists[statUpdate+routeDirect] != nil {
		r.Forwarding = []forwardRow{}
		for _, name := range statOrder {
			add(name + routeDirect)
			add(name + routeForwarded)
			d, f := s.hists[name+routeDirect], s.hists[name+routeForwarded]
			if d == nil || f == nil || d.Count() == 0 || f.Count() == 0 {
				continue
			}
			dp, fp := d.Quantile(0.5), f.Quantile(0.5)
			r.Forwarding = append(r.Forwarding, forwardRow{
				Name: name, DirectP50Ms: ms(dp), ForwardedP50Ms: ms(fp), Ratio: float64(fp) / float64(dp),
			})
		}
	}

	r.CPU.Generator = toProcCPU(m.generatorCPU, m.elapsed)
	r.CPU.Nodes = []nodeCPU{}
	var total cpuTimes
	for _, n := range m.nodes {
		c := nodeCPU{ID: n.id, PID: n.pid, RSSBytes: n.rss}
		if n.err != nil {
			c.Error = n.err.Error()
		} else {
			c.procCPU = toProcCPU(n.cpu, m.elapsed)
			total.user += n.cpu.user
			total.sys += n.cpu.sys
		}
		r.CPU.Nodes = append(r.CPU.Nodes, c)
	}
	r.CPU.NodesTotal = toProcCPU(total, m.elapsed)
	if m.machineErr == nil {
		machine := m.machineBusy.Seconds() / m.elapsed.Seconds()
		other := max(machine-r.CPU.Generator.Cores-r.CPU.NodesTotal.Cores, 0)
		r.CPU.MachineCores, r.CPU.OtherCores = &machine, &other
	}
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeTable prints the report for people.
func (r *report) writeTable(w io.Writer) {
	mode := "read-modify-write updates (GET, then PUT with its X-Context)"
	switch {
	case r.ReadFraction == 1:
		mode = "no updates"
	case !r.ReadModifyWrite:
		mode = "blind updates (PUT without context)"
	}
	where := fmt.Sprintf("%d node(s) started locally", r.Cluster.Nodes)
	if !r.Cluster.Started {
		where = fmt.Sprintf("%d target(s)", len(r.Cluster.Targets))
	}
	fmt.Fprintf(w, "workload %s (%.0f%% reads, %.0f%% updates), %s\n", r.Workload, 100*r.ReadFraction, 100*(1-r.ReadFraction), mode)
	fmt.Fprintf(w, "%d keys (%s), %d-byte values, %d clients, %s, n=%d r=%d w=%d\n",
		r.Keys, r.Distribution, r.ValueBytes, r.Clients, where, r.Cluster.N, r.Cluster.R, r.Cluster.W)
	fmt.Fprintf(w, "measured %.1fs after %.0fs warm-up, %s, %d cores\n\n", r.ElapsedSeconds, r.WarmupSeconds, r.Date, r.Cores)

	fmt.Fprintf(w, "throughput  %.0f ops/s  (%.0f requests/s)   ops %d   errors %d   GETs answered 300 (siblings) %d\n\n",
		r.OpsPerSecond, r.RequestsPerSecond, r.Ops, r.Errors, r.SiblingReads)

	fmt.Fprintf(w, "%-22s %9s %8s %8s %8s %8s %8s %8s\n", "operation", "count", "ops/s", "mean ms", "p50 ms", "p99 ms", "p99.9 ms", "max ms")
	for _, o := range r.Operations {
		fmt.Fprintf(w, "%-22s %9d %8.0f %8.2f %8.2f %8.2f %8.2f %8.2f\n",
			o.Name, o.Count, o.OpsPerSecond, o.MeanMs, o.P50Ms, o.P99Ms, o.P999Ms, o.MaxMs)
	}

	if len(r.Forwarding) > 0 {
		fmt.Fprintln(w, "\nforwarding: p50 of operations sent to a node outside the key's preference list vs to its coordinator")
		fmt.Fprintf(w, "%-22s %14s %17s %6s\n", "operation", "direct p50 ms", "forwarded p50 ms", "ratio")
		for _, f := range r.Forwarding {
			fmt.Fprintf(w, "%-22s %14.3f %17.3f %6.2f\n", f.Name, f.DirectP50Ms, f.ForwardedP50Ms, f.Ratio)
		}
	}

	if len(r.ErrorKinds) > 0 {
		fmt.Fprintln(w, "\nerrors")
		for _, e := range r.ErrorKinds {
			fmt.Fprintf(w, "  %8d  %s", e.Count, e.Kind)
			if e.Example != "" {
				fmt.Fprintf(w, "  (e.g. %s)", e.Example)
			}
			fmt.Fprintln(w)
		}
	}

	fmt.Fprintf(w, "\nCPU over the measured window (cores busy = CPU seconds / wall seconds; the machine has %d)\n", r.Cores)
	fmt.Fprintf(w, "%-22s %8s %8s %10s %8s\n", "process", "user s", "sys s", "cores busy", "RSS MiB")
	g := r.CPU.Generator
	fmt.Fprintf(w, "%-22s %8.2f %8.2f %10.2f\n", "generator (this tool)", g.UserSeconds, g.SysSeconds, g.Cores)
	for _, n := range r.CPU.Nodes {
		name := fmt.Sprintf("%s (pid %d)", n.ID, n.PID)
		if n.Error != "" {
			fmt.Fprintf(w, "%-22s %s\n", name, n.Error)
			continue
		}
		fmt.Fprintf(w, "%-22s %8.2f %8.2f %10.2f %8.0f\n", name, n.UserSeconds, n.SysSeconds, n.Cores, float64(n.RSSBytes)/(1<<20))
	}
	if len(r.CPU.Nodes) > 1 {
		t := r.CPU.NodesTotal
		fmt.Fprintf(w, "%-22s %8.2f %8.2f %10.2f\n", "nodes together", t.UserSeconds, t.SysSeconds, t.Cores)
	}
	if r.CPU.OtherCores != nil {
		fmt.Fprintf(w, "%-22s %8s %8s %10.2f\n", "other processes", "", "", *r.CPU.OtherCores)
		fmt.Fprintf(w, "%-22s %8s %8s %10.2f\n", "whole machine", "", "", *r.CPU.MachineCores)
	}
	if len(r.Heap) > 0 {
		fmt.Fprintf(w, "\nGo heap in use at the end (%s on /metrics)\n", heapMetric)
		for _, h := range r.Heap {
			if h.Error != "" {
				fmt.Fprintf(w, "  %-28s %s\n", h.Target, h.Error)
				continue
			}
			fmt.Fprintf(w, "  %-28s %8.1f MiB\n", h.Target, float64(h.HeapInuseBytes)/(1<<20))
		}
	}
	busy := g.Cores + r.CPU.NodesTotal.Cores
	if r.CPU.MachineCores != nil {
		busy = *r.CPU.MachineCores
	}
	switch {
	case r.Cores > 0 && busy > 0.9*float64(r.Cores):
		fmt.Fprintf(w, "\nthe machine's %d cores were %.0f%% busy: throughput is CPU-bound; the generator's %.2f cores and other processes' are CPU the nodes did not get\n",
			r.Cores, 100*busy/float64(r.Cores), g.Cores)
	case r.Cores > 0 && busy < 0.6*float64(r.Cores):
		fmt.Fprintf(w, "\nthe machine's %d cores were only %.0f%% busy: the nodes wait on something other than CPU (disk syncs, locks, timers)\n",
			r.Cores, 100*busy/float64(r.Cores))
	}
}
