package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// The load tool and the issuer simulator are tested against a real gateway,
// started in-process (gatewaytest.Start) on loopback ports.

// startGateway runs a gateway on the embedded config changed by mutate and
// waits until its issuer links have signed on.
func startGateway(t *testing.T, mutate func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, mutate)
	if err := waitSignedOn(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	return g
}

// waitSignedOn waits until the development issuer's link has signed on,
// and the SM4 issuer's too when the in-process simulator hosts it.
func waitSignedOn(ctx context.Context, g *gateway.Gateway) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		on := g.SignedOn()
		sm4 := false
		for _, is := range g.Config().Routing.Issuers {
			sm4 = sm4 || (is.ID == gateway.DevSM4Issuer && g.Sim() != nil && slices.Contains(is.Hosts, g.SimAddr()))
		}
		if on[gateway.DevIssuer] && (!sm4 || on[gateway.DevSM4Issuer]) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the issuer links did not sign on within 10s")
}

// pinChange is a PIN change by card i of pop from its own terminal.
func pinChange(pop issuersim.Population, i int, newPIN string) loadgen.Op {
	c := pop.Card(i)
	return loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: fmt.Sprintf("OPS%05d", i), Proc: iso8583.ProcPINChange, PAN: c.PAN,
		OldPIN: c.PIN, NewPIN: newPIN, Format: pinblock.Format0, KeyID: devkeys.ATMZPK}
}

// send sends op and returns the response code, waiting 15 s at most.
func send(ctx context.Context, c *loadgen.Client, op loadgen.Op) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return c.Send(rctx, op)
}
