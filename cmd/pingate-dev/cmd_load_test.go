package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"pingate/integration/gateway"
	"pingate/integration/loadgen"
)

// startLoadGateway runs the embedded development gateway in-process with
// limits raised for load (the defaults allow a person's pace).
func startLoadGateway(t *testing.T) *gateway.Gateway {
	t.Helper()
	return startGateway(t, func(cfg *gateway.Config) {
		cfg.Instance = "loadtest"
		raiseLimitsForLoad(cfg)
	})
}

// lastJSON runs a command line and decodes the JSON object on stdout's last line.
func lastJSON(t *testing.T, args ...string) loadgen.Report {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("pingate %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("last line of stdout is not the JSON report: %v", err)
	}
	return rep
}

// TestLoadAgainstGateway drives the real gateway and its issuer simulator:
// 100 cards carry 400 operations, so most cards change PIN several times and
// every change after the first only succeeds if the tool followed the PIN.
// The window (cards 2950–3049) holds the simulator's six special cards of
// that range (always 96 or 57), which the tool must leave out.
func TestLoadAgainstGateway(t *testing.T) {
	g := startLoadGateway(t)
	const n, inFlight = 400, 8
	rep := lastJSON(t, "load", "--target", g.AcquirerAddr(), "--requests", "400", "--duration", "60s", "--warmup", "0",
		"--concurrency", "2x4", "--cards", "100", "--card-offset", "2950", "--json", "--quiet", "--rand-seed", "3")
	if rep.Requests < n || rep.Requests > n+inFlight {
		t.Errorf("requests = %d, want %d to %d", rep.Requests, n, n+inFlight)
	}
	if rep.Errors != 0 || len(rep.ErrorKinds) != 0 {
		t.Errorf("errors = %d %v, want none", rep.Errors, rep.ErrorKinds)
	}
	if len(rep.Codes) != 1 || rep.Codes["00"] != rep.Requests {
		t.Errorf("codes = %v, want all %d approved", rep.Codes, rep.Requests)
	}
	ops := rep.ByOperation
	if ops["change"]+ops["reset"]+ops["unblock"] != rep.Requests || ops["change"] < rep.Requests/2 || ops["reset"] == 0 || ops["unblock"] == 0 {
		t.Errorf("by operation = %v for %d requests, want about 80/10/10", ops, rep.Requests)
	}
	// The default --sm4-share sends a fifth of the changes from the SM4 ATM
	// network, as SM4-0 blocks; every one was approved (codes above).
	if rep.SM4Changes == 0 || rep.SM4Changes >= ops["change"] {
		t.Errorf("sm4 changes = %d of %d changes, want some but not all", rep.SM4Changes, ops["change"])
	}
	if got := g.Sim().Requests.Load(); got < rep.Requests {
		t.Errorf("issuer simulator saw %d PIN operations, want at least %d", got, rep.Requests)
	}
	if rep.TPS <= 0 || rep.LatencyMS.P50 <= 0 || rep.LatencyMS.P50 > rep.LatencyMS.P99 || rep.LatencyMS.P99 > rep.LatencyMS.Max {
		t.Errorf("tps %v, latency %+v: want positive and ordered", rep.TPS, rep.LatencyMS)
	}
}

// TestLoadOpenLoop offers a fixed rate and reports it as such.
func TestLoadOpenLoop(t *testing.T) {
	g := startLoadGateway(t)
	rep := lastJSON(t, "load", "--target", g.AcquirerAddr(), "--rate", "100", "--duration", "1s", "--warmup", "0",
		"--concurrency", "1x32", "--cards", "100", "--mix", "unblock=1", "--json", "--quiet")
	// 32 slots: a start that finds every slot busy is not sent (an error), and
	// on a loaded CI machine 8 slots at 100/s ran out when answers took 80 ms.
	if rep.Mode != "open" || rep.Rate != 100 {
		t.Errorf("mode, rate = %q, %v; want open, 100", rep.Mode, rep.Rate)
	}
	// 100/s for 1 s, give or take the requests in flight at the end.
	if rep.Requests < 80 || rep.Requests > 110 || rep.Errors != 0 || rep.Codes["00"] != rep.Requests {
		t.Errorf("requests %d, errors %d, codes %v; want about 100, all approved", rep.Requests, rep.Errors, rep.Codes)
	}
}

func TestBaselineInProcess(t *testing.T) {
	rep := lastJSON(t, "bench-baseline", "--requests", "300", "--duration", "60s", "--warmup", "0", "--concurrency", "2x2", "--json", "--quiet")
	if rep.Requests < 300 || rep.Errors != 0 || rep.Codes["00"] != rep.Requests || rep.TPS <= 0 {
		t.Errorf("requests %d, errors %d, codes %v, tps %v; want ≥ 300 all answered", rep.Requests, rep.Errors, rep.Codes, rep.TPS)
	}
}

func TestLoadFlagErrors(t *testing.T) {
	tests := [][]string{
		{"load", "--mix", "swap=1"},
		{"load", "--concurrency", "0"},
		{"load", "--rate", "-1"},
		{"load", "--cards", "10", "--concurrency", "4x8"},
		{"load", "--card-offset", "999999999"},
		{"load", "--bins", "12"},
		{"load", "extra"},
		{"bench-baseline", "--concurrency", "x"},
	}
	for _, args := range tests {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 {
			t.Errorf("pingate %s: exit %d, want 2 (usage)", strings.Join(args, " "), code)
		}
		if lines := strings.Count(errOut.String(), "\n"); lines != 1 {
			t.Errorf("pingate %s: %d lines on stderr, want 1", strings.Join(args, " "), lines)
		}
	}
}

// TestLoadgenPlaysTheEmbeddedIdentities: the acquirers and card ranges the
// load tool plays are the embedded development config's.
func TestLoadgenPlaysTheEmbeddedIdentities(t *testing.T) {
	if loadgen.ATMAcquirer != gateway.DevATMAcquirer || loadgen.BranchAcquirer != gateway.DevBranchAcquirer || loadgen.SM4Acquirer != gateway.DevSM4Acquirer {
		t.Errorf("loadgen acquirers %s, %s, %s; the embedded config's are %s, %s, %s", loadgen.ATMAcquirer, loadgen.BranchAcquirer,
			loadgen.SM4Acquirer, gateway.DevATMAcquirer, gateway.DevBranchAcquirer, gateway.DevSM4Acquirer)
	}
	if strings.Join(loadgen.DevBINs, ",") != strings.Join(gateway.DevBINs(), ",") {
		t.Errorf("loadgen.DevBINs = %v, the embedded config's are %v", loadgen.DevBINs, gateway.DevBINs())
	}
}

// raiseLimitsForLoad lifts the per-card and per-acquirer limits far above
// what a load run sends.
func raiseLimitsForLoad(cfg *gateway.Config) {
	cfg.Limits.CardOpsPerDay = 1_000_000
	cfg.Limits.AcquirerRPS, cfg.Limits.AcquirerBurst = 1e6, 1_000_000
}
