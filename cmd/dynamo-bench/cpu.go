package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTimes is processor time spent by a process, split by mode.
type cpuTimes struct {
	user, sys time.Duration
}

func (c cpuTimes) total() time.Duration { return c.user + c.sys }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{user: c.user - o.user, sys: c.sys - o.sys}
}

// selfCPU is the CPU this process (every thread of the load generator) has
// used so far.
func selfCPU() cpuTimes {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}
	}
	return cpuTimes{
		user: time.Duration(ru.Utime.Nano()),
		sys:  time.Duration(ru.Stime.Nano()),
	}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times. Linux fixes
// it at 100 for user space whatever the kernel's own tick rate.
const clockTicks = 100

// procSample is what /proc/<pid>/stat says of a process at one moment.
type procSample struct {
	cpu cpuTimes
	rss int64 // resident set, bytes
}

// readProcStat reads the CPU times and resident set of pid from
// /proc/<pid>/stat (Linux only).
func readProcStat(pid int) (procSample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	return parseProcStat(string(b))
}

// parseProcStat parses one /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so fields
// are counted from the last ')'.
func parseProcStat(line string) (procSample, error) {
	end := strings.LastIndexByte(line, ')')
	if end < 0 {
		return procSample{}, fmt.Errorf("proc stat: no command name in %q", line)
	}
	// After ')' come fields 3 (state) onwards: utime is field 14, stime 15,
	// rss (in pages) 24.
	f := strings.Fields(line[end+1:])
	if len(f) < 22 {
		return procSample{}, fmt.Errorf("proc stat: %d fields after the command name, want at least 22", len(f))
	}
	field := func(n int) (int64, error) { return strconv.ParseInt(f[n-3], 10, 64) }
	utime, err1 := field(14)
	stime, err2 := field(15)
	rss, err3 := field(24)
	if err1 != nil || err2 != nil || err3 != nil {
		return procSample{}, fmt.Errorf("proc stat: bad numbers in %q", line)
	}
	tick := time.Second / clockTicks
	return procSample{
		cpu: cpuTimes{user: time.Duration(utime) * tick, sys: time.Duration(stime) * tick},
		rss: rss * int64(os.Getpagesize()),
	}, nil
}

// machineSample is the machine-wide CPU time from the first line of
// /proc/stat: busy is every mode but idle and iowait, over all cores.
type machineSample struct {
	busy, total time.Duration
}

// readMachineStat reads /proc/stat (Linux only).
func readMachineStat() (machineSample, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineSample{}, err
	}
	return parseMachineStat(string(b))
}

func parseMachineStat(text string) (machineSample, error) {
	line, _, _ := strings.Cut(text, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return machineSample{}, fmt.Errorf("proc stat: first line %q is not the cpu total", line)
	}
	var s machineSample
	tick := time.Second / clockTicks
	// user nice system idle iowait irq softirq steal; guest time is
	// already counted in user and nice.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return machineSample{}, fmt.Errorf("proc stat: bad number %q in %q", v, line)
		}
		d := time.Duration(n) * tick
		s.total += d
		if i != 3 && i != 4 {
			s.busy += d
		}
	}
	return s, nil
}
