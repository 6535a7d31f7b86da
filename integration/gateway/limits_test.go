package gateway_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/redislimit"
	"pingate/iso8583"
)

// TestEmbeddedLimitsInProcess: a gateway on the embedded default (limits
// backend memory, redislimit.Memory) applies the documented card limit:
// over the ISO 8583 listener, one card's first ten operations of the day are
// answered 00 and the eleventh is refused 65, recorded with the reason
// card_daily_limit (docs/rate-limits.md).
func TestEmbeddedLimitsInProcess(t *testing.T) {
	g := gatewaytest.Start(t, nil)
	if b := g.Config().Limits.Backend; b != "memory" {
		t.Fatalf("the embedded default's limits backend is %q, want memory", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !g.SignedOn()[gateway.DevIssuer] {
		select {
		case <-ctx.Done():
			t.Fatal("the issuer link did not sign on")
		case <-time.After(20 * time.Millisecond):
		}
	}
	client, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	sc := g.Config().IssuerSim
	card := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}.Card(21)
	n := redislimit.DefaultCardOpsPerDay
	for i := range n + 1 {
		// Each unblock from its own branch terminal: the terminal limit
		// (burst 5) does not bind, the card's does.
		f, err := loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: fmt.Sprintf("BR0117%02d", i),
			Proc: iso8583.ProcPINUnblock, PAN: card.PAN, Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}.Fields()
		if err != nil {
			t.Fatal(err)
		}
		ans, err := client.Do(ctx, f)
		if err != nil {
			t.Fatalf("operation %d: %v", i+1, err)
		}
		want := iso8583.RCApproved
		if i == n {
			want = iso8583.RCExceedsFrequency
		}
		if ans.ResponseCode != want {
			t.Fatalf("operation %d of the card today answered %s, want %s", i+1, ans.ResponseCode, want)
		}
	}
	entries, err := g.Journal().Entries(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("no events in the journal")
	}
	last, err := events.Decode(entries[len(entries)-1].Message)
	if err != nil {
		t.Fatal(err)
	}
	if last.Code != iso8583.RCExceedsFrequency || last.Reason != "card_daily_limit" || last.Outcome != "limited" {
		t.Errorf("the refusal's event = %s %s (%s), want 65 limited (card_daily_limit)", last.Code, last.Outcome, last.Reason)
	}
}

// TestNoMiniredisInTheBinary: miniredis, a test fake with an unauthenticated
// listener, is linked into no production package: only tests use it.
func TestNoMiniredisInTheBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "pingate/cmd/pingate").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "miniredis") {
			t.Errorf("the pingate binary links %s", pkg)
		}
	}
}
