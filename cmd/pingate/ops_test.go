package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/cmd/internal/clitest"
	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// Helpers of the tests that run a gateway and drive it as an ATM network
// would. (The tests of deploy/ are in cmd/internal/deploycheck.)

// opsRepo is the repository root (tests run in cmd/pingate).
const opsRepo = "../.."

func opsPath(parts ...string) string { return filepath.Join(append([]string{opsRepo}, parts...)...) }

// opsGateway is startTestGateway without the branch channel (it has its own
// tests), once its issuer link has signed on.
func opsGateway(t *testing.T, mutate func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	g := startTestGateway(t, func(c *gateway.Config) {
		c.Instance = "ops-test"
		off := false
		c.Branch.Enabled = &off
		if mutate != nil {
			mutate(c)
		}
	})
	if err := waitReady(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	return g
}

// opsChange is a PIN change by card i of the embedded population from its own
// terminal (terminal limits are per terminal: one request each stays inside).
func opsChange(pop issuersim.Population, i int, newPIN string) loadgen.Op {
	c := pop.Card(i)
	return loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: fmt.Sprintf("OPS%05d", i), Proc: iso8583.ProcPINChange, PAN: c.PAN,
		OldPIN: c.PIN, NewPIN: newPIN, Format: pinblock.Format0, KeyID: devkeys.ATMZPK}
}

func opsPopulation(sc *gateway.IssuerSimConfig) issuersim.Population {
	return issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
}

// opsDo sends op and returns the response code, waiting 15 s at most.
func opsDo(ctx context.Context, c *loadgen.Client, op loadgen.Op) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return c.Send(rctx, op)
}

// makeBuildLine is the Makefile's build line (clitest.MakeBuildLine).
func makeBuildLine(t *testing.T) string { return clitest.MakeBuildLine(t, opsRepo) }

// TestReadyzReflectsRealReadiness: /readyz is 200 only while the issuer link
// is signed on and the journal directory is writable; it turns 503 when the
// issuer host goes away or the journal directory is replaced by something
// that cannot be written, and back once they recover.
func TestReadyzReflectsRealReadiness(t *testing.T) {
	g := opsGateway(t, nil)
	ready := func() (int, map[string]any) {
		resp, err := http.Get("http://" + g.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("readyz = %d %v, want 200", code, body)
	}
	live, err := http.Get("http://" + g.HTTPAddr() + "/healthz")
	if err != nil || live.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", live, err)
	}
	live.Body.Close()

	// The journal directory becomes unwritable: a plain file takes its place.
	dir := g.Config().Events.JournalDir
	moved := dir + ".away"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, body := ready()
	if code != http.StatusServiceUnavailable {
		t.Errorf("readyz with the journal unwritable = %d %v, want 503", code, body)
	} else if checks, _ := body["checks"].(map[string]any); checks["journal"] == "ok" {
		t.Errorf("readyz checks %v: journal reported ok", checks)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("readyz after the journal recovered = %d %v, want 200", code, body)
	}

	// The issuer host goes down: its links lose their sign-on. Both dev
	// issuers (ssbank, sm4bank) are on that one host and their links drop in
	// no set order, so the first 503 may name either; every 503 must name an
	// issuer without a link, and the dev issuer's loss must show.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Sim().Server().Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body = ready()
		checks, _ := body["checks"].(map[string]any)
		if code == http.StatusServiceUnavailable {
			down := false
			for name, v := range checks {
				down = down || strings.HasPrefix(name, "issuer:") && v != "signed on"
			}
			if !down {
				t.Fatalf("readyz 503 but checks %v show every issuer signed on", checks)
			}
			if checks["issuer:"+gateway.DevIssuer] != "signed on" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with the issuer host down = %d %v, want 503 with issuer:%s not signed on", code, body, gateway.DevIssuer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
