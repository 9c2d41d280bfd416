package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, as the kernel allows.
	line := "4242 (dy (na) mo) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123 1234567 3000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	s, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.cpu.user != 2500*time.Millisecond || s.cpu.sys != 750*time.Millisecond {
		t.Errorf("cpu %+v, want user 2.5s sys 0.75s", s.cpu)
	}
	if want := int64(3000 * os.Getpagesize()); s.rss != want {
		t.Errorf("rss %d, want %d", s.rss, want)
	}
	if _, err := parseProcStat("4242 (x) S 1 2"); err == nil {
		t.Error("a truncated line parsed")
	}
}

func TestSelfCPUGrows(t *testing.T) {
	before := selfCPU()
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for selfCPU().total() <= before.total() && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	if selfCPU().total() <= before.total() {
		t.Errorf("getrusage shows no CPU used after 5s of spinning (%d)", x)
	}
}

func TestReadProcStatOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	s, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rss <= 0 {
		t.Errorf("rss %d, want positive", s.rss)
	}
}

func TestParseMachineStat(t *testing.T) {
	s, err := parseMachineStat("cpu  100 5 50 800 40 2 3 0 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	// busy: user+nice+system+irq+softirq+steal = 160 ticks; guest (7) is
	// already inside user. total adds idle and iowait: 1000 ticks.
	if s.busy != 1600*time.Millisecond || s.total != 10*time.Second {
		t.Errorf("busy %v total %v, want 1.6s and 10s", s.busy, s.total)
	}
	if _, err := parseMachineStat("intr 1 2 3\n"); err == nil {
		t.Error("a file without the cpu line parsed")
	}
}

func TestParseMetric(t *testing.T) {
	text := []byte("# HELP go_memstats_heap_inuse_bytes x\n# TYPE go_memstats_heap_inuse_bytes gauge\n" +
		"go_memstats_heap_inuse_bytes_total 1\ngo_memstats_heap_inuse_bytes 1.2345e+07\nother 3\n")
	v, err := parseMetric(text, heapMetric)
	if err != nil || v != 12345000 {
		t.Errorf("parseMetric = %d, %v; want 12345000", v, err)
	}
	if _, err := parseMetric([]byte("other 1\n"), heapMetric); err == nil {
		t.Error("a missing metric parsed")
	}
}
