package loadgen

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCPUWatchCountsSyscalls: the writes this process makes between the
// two readings show in its syscalls per operation (each os.File.Write of a
// small buffer is one write(2)), and the CPU figures are not negative.
func TestCPUWatchCountsSyscalls(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const writes, answered = 1000, 10
	w := startCPUWatch("load", []WatchedProc{{Name: "me", PID: os.Getpid()}})
	for range writes {
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range w.finish(answered) {
		if u.Error != "" || u.CPUS < 0 {
			t.Fatalf("%s: cpu %v s, error %q", u.Name, u.CPUS, u.Error)
		}
		if u.SyscallsPerOp == nil {
			t.Fatalf("%s: no syscall count", u.Name)
		}
		if got := *u.SyscallsPerOp; got < writes/answered {
			t.Errorf("%s: %.1f syscalls per operation, want at least %d", u.Name, got, writes/answered)
		}
	}
}

func TestProcSyscallsOfMissingProcess(t *testing.T) {
	if _, err := procSyscalls("0"); err == nil {
		t.Error("procSyscalls(0) = nil error, want one")
	}
}
