// Package cputime reads the CPU time this process has used (getrusage(2),
// user + system, every thread, GC included), for benchmarks that report CPU
// per operation beside ns/op: on a shared machine the CPU a piece of work
// costs moves far less than the wall-clock time it takes.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Self is the user + system CPU time of this process so far.
func Self() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// Measure reads Self for benchmark b; the func it returns, called after b's
// loop, reports the CPU per iteration since then as the metric cpu-ns/op.
func Measure(b *testing.B) (report func()) {
	start, err := Self()
	if err != nil {
		b.Fatal(err)
	}
	return func() {
		end, err := Self()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}
