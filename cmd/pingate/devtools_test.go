package main

import (
	"encoding/json"
	"strings"
	"testing"

	"pingate/cmd/internal/clitest"
	"pingate/integration/gateway"
	"pingate/integration/loadgen"
)

// The development tools (issuer-sim, load) are in pingate-dev: tests here
// that need one run the built pingate-dev.

// devBinary is pingate-dev, built once per test run.
func devBinary(t *testing.T) string { return clitest.Build(t, "pingate/cmd/pingate-dev") }

// devCommands are the pingate-dev commands opsStart runs from pingate-dev.
var devCommands = map[string]bool{"issuer-sim": true, "hsm-sim": true, "load": true, "bench-baseline": true}

// raiseLimitsForLoad lifts the card and acquirer limits of the embedded
// config (a person's pace) for a load run.
func raiseLimitsForLoad(cfg *gateway.Config) {
	cfg.Limits.CardOpsPerDay = 1_000_000
	cfg.Limits.AcquirerRPS, cfg.Limits.AcquirerBurst = 1e6, 1_000_000
}

// lastJSON runs a pingate-dev command line (load) through the built binary
// and decodes the JSON report on stdout's last line.
func lastJSON(t *testing.T, args ...string) loadgen.Report {
	t.Helper()
	out, errOut, code := clitest.Exec(t, devBinary(t), args...)
	if code != 0 {
		t.Fatalf("pingate-dev %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line of stdout is not the JSON report: %v", err)
	}
	return rep
}
