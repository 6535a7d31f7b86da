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

// unblocks sends one card's unblocks over the ISO 8583 listener, each from
// its own branch terminal (the terminal limit, burst 5, does not bind; the
// card's does), numbered from first, and returns their codes.
func unblocks(t *testing.T, g *gateway.Gateway, card string, first, n int) []string {
	t.Helper()
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
	defer client.Close()
	var codes []string
	for i := first; i < first+n; i++ {
		f, err := loadgen.Op{Acquirer: gateway.DevBranchAcquirer, Terminal: fmt.Sprintf("BR0117%02d", i),
			Proc: iso8583.ProcPINUnblock, PAN: card, Teller: "TELLER-0117-07", IDRef: "IDCHK-2026-000123"}.Fields()
		if err != nil {
			t.Fatal(err)
		}
		ans, err := client.Do(ctx, f)
		if err != nil {
			t.Fatalf("operation %d: %v", i+1, err)
		}
		codes = append(codes, ans.ResponseCode)
	}
	return codes
}

func testCard(g *gateway.Gateway, i int) string {
	sc := g.Config().IssuerSim
	return issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}.Card(i).PAN
}

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
	n := redislimit.DefaultCardOpsPerDay
	codes := unblocks(t, g, testCard(g, 21), 0, n+1)
	for i, code := range codes {
		want := iso8583.RCApproved
		if i == n {
			want = iso8583.RCExceedsFrequency
		}
		if code != want {
			t.Fatalf("operation %d of the card today answered %s, want %s", i+1, code, want)
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

// TestMemoryLimitsSurviveAReload: a reload that raises the card limit keeps
// the counts of the in-process limiter: a card at its limit of 3 gets one
// more operation under a limit of 4, not four.
func TestMemoryLimitsSurviveAReload(t *testing.T) {
	g := gatewaytest.Start(t, func(c *gateway.Config) { c.Limits.CardOpsPerDay = 3 })
	card := testCard(g, 22)
	if got := unblocks(t, g, card, 0, 4); got[2] != iso8583.RCApproved || got[3] != iso8583.RCExceedsFrequency {
		t.Fatalf("under a limit of 3: %v, want the 4th refused 65", got)
	}
	next := g.Config()
	next.Limits.CardOpsPerDay = 4
	g.SetReloadSource(func() (gateway.Config, error) { return next, nil })
	if rep, err := g.Reload("test"); err != nil || !rep.LimitsChanged {
		t.Fatalf("Reload() = %+v, %v; want the limits changed", rep, err)
	}
	if got := unblocks(t, g, card, 4, 2); got[0] != iso8583.RCApproved || got[1] != iso8583.RCExceedsFrequency {
		t.Errorf("after the reload to a limit of 4: %v, want one more answered, then 65", got)
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
