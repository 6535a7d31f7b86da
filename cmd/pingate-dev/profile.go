package main

import (
	"fmt"
	"os"
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
