package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"pingate/integration/branchapi"
	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/redislimit"
	"pingate/integration/testservers"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// sharedAnswer is one branch API answer as the test sees it.
type sharedAnswer struct {
	status int
	body   []byte
}

func (a sharedAnswer) result(t *testing.T) branchapi.OperationResult {
	t.Helper()
	var res branchapi.OperationResult
	if err := json.Unmarshal(a.body, &res); err != nil || res.OperationID == "" {
		t.Fatalf("answer %d is no operation result: %s", a.status, a.body)
	}
	return res
}

// branchCall sends body (nil: GET) to path as c, with an Idempotency-Key if
// key is not empty. Safe from any goroutine.
func branchCall(ctx context.Context, c *branchClient, path string, body []byte, key string) (sharedAnswer, error) {
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return sharedAnswer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return sharedAnswer{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return sharedAnswer{status: resp.StatusCode, body: raw}, err
}

// TestBranchSharedStoreTwoGateways runs two gateways with limits on one real
// Redis (limits.backend redis), as two instances behind a load balancer:
// each has its own issuer simulator, so the sum of their request counters
// is what the issuer side saw. A retry on the other gateway replays the
// first answer, concurrent retries on both run once, the same key with
// another body is refused on the other gateway, and a reset submitted to
// one gateway and approved on the other completes there.
func TestBranchSharedStoreTwoGateways(t *testing.T) {
	redisAddr, _ := testservers.StartRedis(t)
	certs := filepath.Join(t.TempDir(), "certs")
	start := func(name string) *gateway.Gateway {
		return startTestGateway(t, func(c *gateway.Config) {
			c.Instance = name
			c.Limits.Backend = "redis"
			c.Limits.Mode, c.Limits.Addrs = redislimit.ModeStandalone, []string{redisAddr}
			c.Limits.TerminalRPS, c.Limits.TerminalBurst, c.Limits.CardOpsPerDay = 1000, 1000, 1000
			c.Branch.DevCertDir = certs // one development CA for both, as one deployment's
		})
	}
	g1, g2 := start("gw1"), start("gw2")
	ctx := context.Background()
	for _, g := range []*gateway.Gateway{g1, g2} {
		if err := waitReady(ctx, g); err != nil {
			t.Fatal(err)
		}
		if rt, ok := g.Branch(); !ok || !rt.Shared {
			t.Fatalf("%s: branch API without the Redis store", g.Config().Instance)
		}
	}
	client := func(g *gateway.Gateway, who string) *branchClient {
		rt, _ := g.Branch()
		c, err := newBranchClient(rt, who)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	teller1, teller2 := client(g1, "teller"), client(g2, "teller")
	issuerRequests := func() int64 { return g1.Sim().Requests.Load() + g2.Sim().Requests.Load() }
	sc := g1.Config().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	k, err := devkeys.Key(devkeys.BranchZPK)
	if err != nil {
		t.Fatal(err)
	}
	pinPad := func(pin, pan string) string {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pinblock.Encipher(pinblock.Format4, p, pan, k)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%X", b)
	}
	unblock := func(pan string) []byte {
		b, _ := json.Marshal(map[string]any{"pan": pan, "branch": branchapi.DevBranch, "terminal": "BR0117T1",
			"teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000301"})
		return b
	}

	t.Run("retry on the other gateway", func(t *testing.T) {
		body := unblock(pop.Card(60).PAN)
		before := issuerRequests()
		first, err := branchCall(ctx, teller1, "/v1/pin/unblocks", body, "gw-retry-1")
		if err != nil {
			t.Fatal(err)
		}
		if res := first.result(t); first.status != http.StatusOK || res.Status != branchapi.StatusCompleted {
			t.Fatalf("unblock on gw1 = %d %s", first.status, res.Status)
		}
		retry, err := branchCall(ctx, teller2, "/v1/pin/unblocks", body, "gw-retry-1")
		if err != nil {
			t.Fatal(err)
		}
		if retry.status != first.status || !bytes.Equal(retry.body, first.body) {
			t.Errorf("retry on gw2 = %d %s, want gw1's answer", retry.status, retry.body)
		}
		if got := issuerRequests() - before; got != 1 {
			t.Errorf("the issuers saw %d requests for one unblock and its retry, want 1", got)
		}
		other, err := branchCall(ctx, teller2, "/v1/pin/unblocks", unblock(pop.Card(61).PAN), "gw-retry-1")
		if err != nil {
			t.Fatal(err)
		}
		var p branchapi.Problem
		_ = json.Unmarshal(other.body, &p)
		if other.status != http.StatusUnprocessableEntity || p.Type != branchapi.ProblemTypeBase+"idempotency-key-reused" {
			t.Errorf("same key, another card on gw2 = %d %s, want 422 idempotency-key-reused", other.status, p.Type)
		}
	})

	t.Run("concurrent retries on both gateways", func(t *testing.T) {
		body := unblock(pop.Card(62).PAN)
		before := issuerRequests()
		const n = 6
		out := make([]sharedAnswer, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			c := teller1
			if i%2 == 1 {
				c = teller2
			}
			wg.Go(func() { out[i], errs[i] = branchCall(ctx, c, "/v1/pin/unblocks", body, "gw-concurrent-1") })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if out[i].status != http.StatusOK || !bytes.Equal(out[i].body, out[0].body) {
				t.Errorf("answer %d = %d %s, want the one answer", i, out[i].status, out[i].body)
			}
		}
		if got := issuerRequests() - before; got != 1 {
			t.Errorf("the issuers saw %d requests for %d concurrent retries, want 1", got, n)
		}
	})

	t.Run("approval on the other gateway", func(t *testing.T) {
		c := pop.Card(63)
		body, _ := json.Marshal(map[string]any{"pan": c.PAN, "branch": branchapi.DevBranch, "terminal": "BR0117T1",
			"teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000302", "mode": branchapi.ModePINPad,
			"pin_format": 4, "key_index": 1, "new_pin_block": pinPad("3917", c.PAN)})
		before := issuerRequests()
		r, err := branchCall(ctx, teller1, "/v1/pin/resets", body, "gw-reset-1")
		if err != nil {
			t.Fatal(err)
		}
		pend := r.result(t)
		if r.status != http.StatusAccepted || pend.Status != branchapi.StatusPendingApproval {
			t.Fatalf("reset on gw1 = %d %s, want 202 pending_approval", r.status, pend.Status)
		}
		decision, _ := json.Marshal(map[string]string{"decision": branchapi.DecisionApprove})
		r, err = branchCall(ctx, client(g2, "supervisor"), "/v1/operations/"+pend.OperationID+"/approval", decision, "")
		if err != nil {
			t.Fatal(err)
		}
		res := r.result(t)
		if r.status != http.StatusOK || res.Status != branchapi.StatusCompleted || res.ResponseCode != "00" || res.Supervisor != "S0117-01" {
			t.Errorf("approval on gw2 = %d %+v, want 200 completed 00 by S0117-01", r.status, res)
		}
		if got := g1.Sim().Requests.Load() + g2.Sim().Requests.Load() - before; got != 1 {
			t.Errorf("the issuers saw %d requests for one approved reset, want 1", got)
		}
		r, err = branchCall(ctx, teller2, "/v1/operations/"+pend.OperationID, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := r.result(t); got.Status != branchapi.StatusCompleted || got.EventID != res.EventID {
			t.Errorf("GET on gw2 = %+v, want the completed reset", got)
		}
	})
}
