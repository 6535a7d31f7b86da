package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
)

// profileFlag writes a CPU profile of the whole command (pprof format) for
// `go tool pprof`: how the load tool's and the simulator's CPU per operation
// is looked into (scripts/benchreport/notes.md).
type profileFlag struct {
	CPUProfile string `name:"cpu-profile" placeholder:"FILE" help:"write a CPU profile (pprof) of this run to FILE"`
}

// start begins the profile, if asked for; stop ends it and closes the file.
func (p profileFlag) start() (stop func() error, err error) {
	if p.CPUProfile == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(p.CPUProfile)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// lightRuntime sets the Go runtime of a tool that shares the machine with
// what it measures (load, issuer-sim, hsm-sim) for the least CPU per operation: one
// P (no idle Ms spinning for work, no wake-ups across Ps: −12 % of each
// tool's CPU per operation in the bench) and a GC target of 400 % (the heap
// is small, so GC ran often: −8 % more for the simulator). The environment's
// GOMAXPROCS and GOGC, when set, win. One core still carries ~10 000
// operations a second for either tool, several times the gateway's peak on
// the bench machine (scripts/benchreport/notes.md).
func lightRuntime() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}
