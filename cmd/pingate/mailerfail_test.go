package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"pingate/integration/branchapi"
	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// TestMailerFailureLeavesNoUnknownPIN: a branch reset with a generated PIN
// whose mailer cannot be printed (the spool directory replaced by a file)
// is answered 96 pin_mailer_failed, as a failure. The issuer had taken the
// generated PIN, which nobody will ever read: the change must not stand
// under a "failed" record. The reversal owed ahead is sent instead, the
// issuer acknowledges it, and the card's previous PIN works again at an ATM.
func TestMailerFailureLeavesNoUnknownPIN(t *testing.T) {
	g := startTestGateway(t, nil)
	ctx := context.Background()
	rt, ok := g.Branch()
	if !ok {
		t.Fatal("the branch API is off")
	}
	if err := os.RemoveAll(rt.Spool); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rt.Spool, []byte("not a directory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	teller, err := newBranchClient(rt, "teller")
	if err != nil {
		t.Fatal(err)
	}
	supervisor, err := newBranchClient(rt, "supervisor")
	if err != nil {
		t.Fatal(err)
	}
	card := opsPopulation(g.Config().IssuerSim).Card(41)
	body := map[string]any{"pan": card.PAN, "branch": branchapi.DevBranch, "terminal": "BR0117M1", "teller": "T0117-07",
		"identity_check_ref": "IDCHK-2026-000301", "mode": branchapi.ModeGenerated}
	pending, err := teller.post(ctx, "/v1/pin/resets", body, http.StatusAccepted)
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	res, err := supervisor.post(ctx, "/v1/operations/"+pending.OperationID+"/approval", map[string]string{"decision": branchapi.DecisionApprove}, http.StatusOK)
	if err != nil || res.ResponseCode != iso8583.RCSystemMalfunction {
		t.Fatalf("approval with an unwritable spool = %+v, %v; want 96", res, err)
	}
	// The reversal goes out in the background: wait for its acknowledgement.
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(t, g.HTTPAddr(), "pingate_issuer_reversals_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reversal advice was sent for the reset the issuer took: its generated PIN, on no mailer, stands")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The record: the reset's failed event, and the reversal naming it.
	var failedID string
	var reversal *gateway.EventLine
	for deadline := time.Now().Add(10 * time.Second); reversal == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no reversed event names the failed reset's event %q", failedID)
		}
		resp, err := http.Get("http://" + g.AdminAddr() + "/admin/events?n=50")
		if err != nil {
			t.Fatal(err)
		}
		var lines []gateway.EventLine
		err = json.NewDecoder(resp.Body).Decode(&lines)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range lines {
			switch {
			case l.Terminal == "BR0117M1" && l.Outcome == routing.OutcomeFailed:
				failedID = l.ID
				if l.Reason != "pin_mailer_failed" {
					t.Fatalf("the reset's event: %s %s, want failed pin_mailer_failed", l.Outcome, l.Reason)
				}
			case l.Terminal == "BR0117M1" && l.Outcome == routing.OutcomeReversed:
				reversal = &lines[i]
			}
		}
	}
	if failedID == "" || reversal.Reverses != failedID {
		t.Errorf("reversal event %s reverses %q, want the failed reset's event %q", reversal.ID, reversal.Reverses, failedID)
	}
	client, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	op := loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: "ATM00841", Proc: iso8583.ProcPINChange, PAN: card.PAN,
		OldPIN: card.PIN, NewPIN: "7305", Format: pinblock.Format0, KeyID: devkeys.ATMZPK}
	if code, err := opsDo(ctx, client, op); err != nil || code != iso8583.RCApproved {
		t.Fatalf("ATM change from the PIN before the failed reset = %q, %v; want 00 (the reset reversed)", code, err)
	}
}
