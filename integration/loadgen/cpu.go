package loadgen

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPU per operation: a run reads /proc/PID/stat of each watched process (and
// of itself) when its measured phase starts and when it ends, and reports
// the CPU time spent in between — user + system, plus that of the process's
// waited-for children — divided by the answered requests. The same window
// as the throughput figure, so the warm-up is left out. It also reads
// /proc/PID/io for the read- and write-family system calls (syscr + syscw:
// read, write, readv, writev and their positioned forms, which is how Go
// reads and writes sockets and files), per answered request; fsync and the
// poller's calls are not among them.

// WatchedProc is a process whose CPU a run reports (Params.CPU).
type WatchedProc struct {
	Name string
	PID  int
}

// ParseWatched reads "name=PID,name=PID"; names must be distinct, PIDs
// positive. "" is no process.
func ParseWatched(s string) ([]WatchedProc, error) {
	var out []WatchedProc
	if s == "" {
		return nil, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		name, p, ok := strings.Cut(strings.TrimSpace(part), "=")
		pid, err := strconv.Atoi(p)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("cpu entry %q: want name=PID", part)
		}
		for _, w := range out {
			if w.Name == name {
				return nil, fmt.Errorf("cpu entry %q: %s given twice", part, name)
			}
		}
		out = append(out, WatchedProc{Name: name, PID: pid})
	}
	return out, nil
}

// CPUUse is one process's CPU over the measured phase of a run.
type CPUUse struct {
	Name string  `json:"name"`
	PID  int     `json:"pid"`
	CPUS float64 `json:"cpu_s"` // user + system seconds, children included
	// MicrosPerOp is CPUS over the run's answered requests, in µs; 0 when
	// nothing was answered.
	MicrosPerOp float64 `json:"us_per_op"`
	// SyscallsPerOp is the read and write system calls over the answered
	// requests; absent when /proc/PID/io could not be read (another user's
	// process without the right to trace it).
	SyscallsPerOp *float64 `json:"syscalls_per_op,omitempty"`
	// Error says why the process could not be read (it had exited, say);
	// the figures are then 0.
	Error string `json:"error,omitempty"`
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports (the kernel fixes it for user space
// whatever its internal HZ).
const clockTicks = 100

// procTicks is utime + stime + cutime + cstime of /proc/PID/stat ("self"
// for this process), in clock ticks.
func procTicks(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields counted from 3 start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, errors.New("short /proc stat line")
	}
	var sum int64
	for _, s := range f[11:15] { // fields 14–17: utime stime cutime cstime
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.New("unreadable /proc stat times")
		}
		sum += v
	}
	return sum, nil
}

// procSyscalls is syscr + syscw of /proc/PID/io.
func procSyscalls(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return 0, err
	}
	var sum int64
	seen := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, errors.New("unreadable /proc io counts")
		}
		sum += n
		seen++
	}
	if seen != 2 {
		return 0, errors.New("no syscr and syscw in /proc io")
	}
	return sum, nil
}

// reading is one process's counters at one moment: the start or the end
// of the measured phase.
type reading struct {
	ticks, syscalls       int64
	ticksErr, syscallsErr error
}

func read(pid string) reading {
	var r reading
	r.ticks, r.ticksErr = procTicks(pid)
	r.syscalls, r.syscallsErr = procSyscalls(pid)
	return r
}

// cpuWatch holds the readings at the start of the measured phase.
type cpuWatch struct {
	procs []WatchedProc
	start []reading
}

// startCPUWatch reads self (under selfName) and procs.
func startCPUWatch(selfName string, procs []WatchedProc) *cpuWatch {
	w := &cpuWatch{procs: append([]WatchedProc{{Name: selfName}}, procs...)}
	w.start = make([]reading, len(w.procs))
	for i := range w.procs {
		w.start[i] = read(w.pidString(i))
	}
	return w
}

func (w *cpuWatch) pidString(i int) string {
	if i == 0 {
		return "self"
	}
	return strconv.Itoa(w.procs[i].PID)
}

// finish reads every process again and spreads the difference over answered.
func (w *cpuWatch) finish(answered int64) []CPUUse {
	out := make([]CPUUse, len(w.procs))
	for i, p := range w.procs {
		u := CPUUse{Name: p.Name, PID: p.PID}
		if i == 0 {
			u.PID = os.Getpid()
		}
		start, end := w.start[i], read(w.pidString(i))
		if err := cmp.Or(end.ticksErr, start.ticksErr); err != nil {
			u.Error = err.Error()
			out[i] = u
			continue
		}
		u.CPUS = float64(end.ticks-start.ticks) / clockTicks
		if answered > 0 {
			u.MicrosPerOp = u.CPUS * 1e6 / float64(answered)
			if start.syscallsErr == nil && end.syscallsErr == nil {
				v := float64(end.syscalls-start.syscalls) / float64(answered)
				u.SyscallsPerOp = &v
			}
		}
		out[i] = u
	}
	return out
}
