package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/routing"
)

// TestKilledDuringAcquirerReversalsLeavesEveryReversalRecorded: ATMs
// change PINs through `pingate serve` and reverse every approved change
// at once with a 0420 (a terminal that gave up), repeating an unanswered
// 0420 on its next connection as an acquirer does. The gateway is killed
// with SIGKILL at random instants and restarted on the same journal. Then,
// against the issuer's ledger: every change the issuer reversed whose
// approval was recorded has a reversed event naming that approval, and
// every change that stands has its approved event and no reversal.
func TestKilledDuringAcquirerReversalsLeavesEveryReversalRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	pop, sim, simAddr := auditedIssuer(t, 3*time.Millisecond)
	dir := t.TempDir()
	cfgPath := opsServeConfig(t, dir, simAddr, 5*time.Second)
	var (
		next    atomic.Int64
		mu      sync.Mutex
		pending []*iso8583.Fields // 0420s not yet answered
	)
	reversalOf := func(change *iso8583.Fields) *iso8583.Fields {
		de90, err := iso8583.OriginalData{MTI: iso8583.MTIAuthRequest, STAN: change.STAN, Transmission: change.TransmissionTime,
			Acquirer: gateway.DevATMAcquirer}.Encode()
		if err != nil {
			t.Error(err)
			return nil
		}
		return &iso8583.Fields{MTI: iso8583.MTIReversalAdvice, PAN: change.PAN, ProcessingCode: iso8583.ProcPINChange,
			AcquirerID: gateway.DevATMAcquirer, TerminalID: change.TerminalID, CardAcceptorID: change.CardAcceptorID, RRN: change.RRN,
			ResponseCode: "68", OriginalData: de90}
	}
	// send sends f until the gateway answers it or dies (false).
	send := func(c *loadgen.Client, f *iso8583.Fields) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		ans, err := c.Do(ctx, f)
		if err != nil {
			return "", false
		}
		return ans.ResponseCode, true
	}
	load := func(acq string, stop <-chan struct{}) {
		connWorkers(acq, 8, stop, func(c *loadgen.Client) bool {
			// An 0420 left unanswered by the last gateway goes first.
			mu.Lock()
			var rev *iso8583.Fields
			if len(pending) > 0 {
				rev, pending = pending[0], pending[1:]
			}
			mu.Unlock()
			if rev == nil {
				i := int(next.Add(1))
				if !pop.Usable(i) {
					return true
				}
				change, err := opsChange(pop, i, "4826").Fields()
				if err != nil {
					t.Error(err)
					return false
				}
				code, ok := send(c, change)
				if !ok {
					return false // the gateway died
				}
				if code != iso8583.RCApproved {
					return true
				}
				rev = reversalOf(change)
			}
			if code, ok := send(c, rev); !ok || code != iso8583.RCApproved {
				mu.Lock()
				pending = append(pending, rev) // repeated until taken
				mu.Unlock()
				return ok
			}
			return true
		})
	}
	const kills = 6
	killUnderLoad(t, cfgPath, kills, 200*time.Millisecond, load)
	// The acquirer's repeated 0420s, then restarts until no reversal is owed.
	restartUntilNoReversalOwed(t, cfgPath, filepath.Join(dir, "journal"), func(acq, _ string) {
		c, err := loadgen.Dial(context.Background(), acq)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mu.Lock()
		left := pending
		pending = nil
		mu.Unlock()
		for _, rev := range left {
			if code, ok := send(c, rev); !ok || code != iso8583.RCApproved {
				t.Errorf("repeated 0420 at %s answered %q", rev.TerminalID, code)
			}
		}
	})
	audit := sim.Audit()
	evs := stoppedJournalEvents(t, filepath.Join(dir, "journal"))
	// No answers are passed: an answered 00 is reversed here on purpose.
	standing, reversed := ledgerMatchesRecords(t, audit, evs, nil)
	acqReversals := 0
	for _, ev := range evs {
		if ev.Outcome == routing.OutcomeReversed && ev.Reason == "acquirer_reversal" {
			acqReversals++
		}
	}
	if reversed == 0 || acqReversals == 0 {
		t.Fatalf("no acquirer reversal ran: %d reversed at the issuer, %d acquirer_reversal events", reversed, acqReversals)
	}
	t.Logf("%d kills: issuer applied %d (%d standing, %d reversed), %d events (%d acquirer reversals), %d reversal advices received",
		kills, len(audit), standing, reversed, len(evs), acqReversals, sim.Reversals.Load())
}

// TestKilledDuringIssuerTimeoutsLeavesEveryReversalRecorded: the issuer
// applies every PIN change but answers after the gateway's issuer timeout,
// so each one is reversed (issuer_timeout). `pingate serve` is killed with
// SIGKILL at random instants under that load and restarted on the same
// journal; then every change the issuer reversed has an event for its
// operation, and none stands.
func TestKilledDuringIssuerTimeoutsLeavesEveryReversalRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	pop, sim, simAddr := auditedIssuer(t, 150*time.Millisecond)
	dir := t.TempDir()
	cfgPath := opsServeConfig(t, dir, simAddr, 5*time.Second)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), "key_index: 1}", "key_index: 1, timeout: 100ms}", 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	load := func(acq string, stop <-chan struct{}) {
		changeLoad(acq, 32, pop, &next, stop, func(c *loadgen.Client, op loadgen.Op) bool {
			_, err := opsDo(context.Background(), c, op)
			return err == nil // else the gateway died
		})
	}
	const kills = 10
	killUnderLoad(t, cfgPath, kills, 300*time.Millisecond, load)
	restartUntilNoReversalOwed(t, cfgPath, filepath.Join(dir, "journal"), nil)
	audit := sim.Audit()
	evs := stoppedJournalEvents(t, filepath.Join(dir, "journal"))
	standing, reversed := ledgerMatchesRecords(t, audit, evs, nil)
	byTerminal := map[string]bool{}
	for _, ev := range evs {
		byTerminal[ev.Terminal] = true
	}
	for _, a := range audit {
		if a.Reversed && !byTerminal[a.Terminal] {
			t.Errorf("operation at %s: reversed at the issuer, with no event at all", a.Terminal)
		}
	}
	if reversed == 0 {
		t.Fatal("no change was reversed: the issuer answered in time")
	}
	t.Logf("%d kills: issuer applied %d (%d standing, %d reversed), %d events, %d reversal advices received",
		kills, len(audit), standing, reversed, len(evs), sim.Reversals.Load())
}
