package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/testservers"
	"pingate/iso8583"
)

// TestReloadDoesNotContactRedis: as docs/operations.md ("Hot reload") says,
// a reload builds the new Redis client without connecting: POST
// /admin/reload onto an address where nothing listens answers 200 with the
// limits changed, and the card operations after it are refused 91 (fail
// closed) until the address is fixed. Only limits that cannot be built — a
// password_env naming an unset variable — answer 500, and the running
// limits stay.
func TestReloadDoesNotContactRedis(t *testing.T) {
	rs := testservers.StartRedisServer(t)
	g := gatewaytest.Start(t, func(c *gateway.Config) {
		c.Limits.Backend = "redis"
		c.Limits.Addrs = []string{rs.Addr}
	})
	card := testCard(g, 41)
	if got := unblocks(t, g, card, 0, 1); got[0] != iso8583.RCApproved {
		t.Fatalf("on the running Redis an unblock answered %s, want 00", got[0])
	}
	reload := func(mutate func(*gateway.Config)) (int, map[string]any) {
		t.Helper()
		next := g.Config()
		mutate(&next)
		g.SetReloadSource(func() (gateway.Config, error) { return next, nil })
		resp, err := http.Post("http://"+g.AdminAddr()+"/admin/reload", "application/json", nil)
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

	status, body := reload(func(c *gateway.Config) { c.Limits.PasswordEnv = "PINGATE_TEST_UNSET_REDIS_PASSWORD" })
	if status != http.StatusInternalServerError || body["result"] != gateway.ReloadFailed {
		t.Errorf("reload with an unset password_env = %d %v, want 500 failed", status, body)
	}
	if got := unblocks(t, g, card, 1, 1); got[0] != iso8583.RCApproved {
		t.Errorf("after the failed reload an unblock answered %s, want 00 (the running limits stay)", got[0])
	}

	dead := freeAddr(t)
	status, body = reload(func(c *gateway.Config) { c.Limits.Addrs = []string{dead} })
	if status != http.StatusOK || body["limits_changed"] != true {
		t.Fatalf("reload onto a Redis that does not listen = %d %v, want 200 with limits_changed", status, body)
	}
	if got := unblocks(t, g, card, 2, 1); got[0] != iso8583.RCIssuerUnavailable {
		t.Errorf("on the unreachable Redis an unblock answered %s, want 91 (fail closed)", got[0])
	}
}
