package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// Hot reload: routes, acquirers, limits and keys swap while requests are in
// flight; a bad configuration is refused and the running one stays; each
// attempt is counted.

// opsSource is a reload source the test changes between reloads.
type opsSource struct {
	mu  sync.Mutex
	cfg gateway.Config
	err error
}

func (s *opsSource) set(c gateway.Config, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg, s.err = c, err
}

func (s *opsSource) get() (gateway.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg, s.err
}

// reloadCounts returns pingate_config_reloads_total by result.
func reloadCounts(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range []string{gateway.ReloadOK, gateway.ReloadRefused, gateway.ReloadFailed} {
		out[r] = metricValue(t, httpAddr, `pingate_config_reloads_total{otel_scope_name="pingate/cmd",otel_scope_schema_url="",otel_scope_version="",result="`+r+`"}`)
	}
	return out
}

// secondATMAcquirer is an acquirer the reloads add and remove.
const secondATMAcquirer = "100002"

func withSecondAcquirer(c gateway.Config) gateway.Config {
	c.Routing.Acquirers = append(append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...), routing.AcquirerConfig{
		ID: secondATMAcquirer, Channel: routing.ChannelATM, Terminals: []string{"*"},
		Keys: map[int]string{1: devkeys.ATMZPK}, Formats: []int{0}})
	return c
}

// withoutRoute drops the route of prefix.
func withoutRoute(c gateway.Config, prefix string) gateway.Config {
	var rs []routing.Route
	for _, r := range c.Routing.Routes {
		if r.Prefix != prefix {
			rs = append(rs, r)
		}
	}
	c.Routing.Routes = rs
	return c
}

// TestReloadUnderLoad: while 8 clients send PIN changes without pause, the
// configuration is reloaded again and again — an acquirer added and
// removed, a route removed and restored, limits changed — and refused
// reloads are mixed in. Every request of the load is answered 00 (no reload
// disturbs a request in flight); after each reload the new configuration
// answers and after each refusal the previous one still does; the counter
// matches the attempts.
func TestReloadUnderLoad(t *testing.T) {
	g := opsGateway(t, func(c *gateway.Config) {
		// The load runs as fast as it can from one acquirer.
		c.Limits.AcquirerRPS, c.Limits.AcquirerBurst = 1e6, 1e6
	})
	base := g.Config() // the running configuration, as gateway.New got it
	base.Routing.Issuers = append([]routing.IssuerConfig(nil), base.Routing.Issuers...)
	for i := range base.Routing.Issuers {
		base.Routing.Issuers[i].Hosts = []string{"issuer-sim"}
	}
	src := &opsSource{cfg: base}
	g.SetReloadSource(src.get)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pop := opsPopulation(g.Config().IssuerSim)

	var (
		next     atomic.Int64
		loadWG   sync.WaitGroup
		answered atomic.Int64
		bad      sync.Map // terminal → code or error
	)
	next.Store(5000)
	for w := 0; w < 8; w++ {
		c, err := loadgen.Dial(ctx, g.AcquirerAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1))
				// Cards of the first BIN only: the route reloads touch the second.
				op := opsChange(pop, 3*i, "4826")
				code, err := opsDo(context.Background(), c, op)
				switch {
				case err != nil:
					bad.Store(op.Terminal, err.Error())
				case code != iso8583.RCApproved:
					bad.Store(op.Terminal, code)
				default:
					answered.Add(1)
				}
			}
		}()
	}

	probe, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	probeN := 9000
	// try sends one PIN change from acquirer acq for a card of BIN index bin.
	try := func(acq string, bin int) string {
		t.Helper()
		probeN++
		op := opsChange(pop, 3*probeN+bin, "4826")
		op.Acquirer = acq
		code, err := opsDo(ctx, probe, op)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	// The probe connection binds to one acquirer: use a fresh one per acquirer.
	tryOn := func(acq string, bin int) string {
		t.Helper()
		old := probe
		if probe, err = loadgen.Dial(ctx, g.AcquirerAddr()); err != nil {
			t.Fatal(err)
		}
		old.Close()
		return try(acq, bin)
	}

	wantOK, wantRefused := 0, 0
	// waitLoad lets the load make progress between reloads, so that every
	// reload happens with requests in flight.
	waitLoad := func() {
		from := answered.Load()
		for answered.Load() < from+16 {
			time.Sleep(time.Millisecond)
		}
	}
	for round := 0; round < 4; round++ {
		waitLoad()
		// Add an acquirer, drop the route of the second BIN, tighten a limit.
		c := withoutRoute(withSecondAcquirer(base), gateway.DevBINs()[1])
		c.Limits.CardOpsPerDay = 20 + round
		src.set(c, nil)
		rep, err := g.Reload("test")
		if err != nil {
			t.Fatalf("round %d: Reload: %v", round, err)
		}
		wantOK++
		if want := len(base.Routing.Acquirers) + 1; !rep.LimitsChanged || rep.Acquirers != want {
			t.Errorf("round %d: report %+v: want %d acquirers and changed limits", round, rep, want)
		}
		if code := tryOn(secondATMAcquirer, 0); code != iso8583.RCApproved {
			t.Errorf("round %d: added acquirer answered %s, want 00", round, code)
		}
		if code := tryOn(gateway.DevATMAcquirer, 1); code != "14" {
			t.Errorf("round %d: card of the removed route answered %s, want 14", round, code)
		}

		// Refused: a route to an unknown issuer; a listener change; a key
		// that is not loaded; an unreadable source.
		for _, bad := range []struct {
			name string
			cfg  func() (gateway.Config, error)
		}{
			{"unknown issuer", func() (gateway.Config, error) {
				x := withSecondAcquirer(base)
				x.Routing.Routes = append(x.Routing.Routes, routing.Route{Prefix: "4000", Issuer: "nobody"})
				return x, nil
			}},
			{"http address", func() (gateway.Config, error) {
				x := withSecondAcquirer(base)
				x.HTTP.Addr = "127.0.0.1:1"
				return x, nil
			}},
			{"key not loaded", func() (gateway.Config, error) {
				x := withSecondAcquirer(base)
				x.Routing.Acquirers[2].Keys = map[int]string{1: "no-such-key"}
				return x, nil
			}},
			{"unreadable", func() (gateway.Config, error) { return gateway.Config{}, errors.New("file gone") }},
		} {
			src.set(bad.cfg())
			if _, err := g.Reload("test"); !errors.Is(err, gateway.ErrReloadRefused) {
				t.Errorf("round %d: reload with %s: %v, want a refusal", round, bad.name, err)
			}
			wantRefused++
		}
		// The configuration of the last successful reload is still in force.
		if code := tryOn(secondATMAcquirer, 0); code != iso8583.RCApproved {
			t.Errorf("round %d: after refusals the added acquirer answered %s, want 00", round, code)
		}
		if code := tryOn(gateway.DevATMAcquirer, 1); code != "14" {
			t.Errorf("round %d: after refusals the removed route answered %s, want 14", round, code)
		}

		// Back to the starting configuration.
		waitLoad()
		src.set(base, nil)
		if _, err := g.Reload("test"); err != nil {
			t.Fatalf("round %d: Reload back: %v", round, err)
		}
		wantOK++
		if code := tryOn(secondATMAcquirer, 0); code != iso8583.RCNotPermittedTerm {
			t.Errorf("round %d: removed acquirer answered %s, want %s", round, code, iso8583.RCNotPermittedTerm)
		}
		if code := tryOn(gateway.DevATMAcquirer, 1); code != iso8583.RCApproved {
			t.Errorf("round %d: restored route answered %s, want 00", round, code)
		}
	}
	cancel()
	loadWG.Wait()
	bad.Range(func(k, v any) bool {
		t.Errorf("request %v during reloads: %v, want 00", k, v)
		return true
	})
	if answered.Load() < 8 {
		t.Errorf("only %d requests answered during the reloads", answered.Load())
	}
	got := reloadCounts(t, g.HTTPAddr())
	if got[gateway.ReloadOK] != float64(wantOK) || got[gateway.ReloadRefused] != float64(wantRefused) || got[gateway.ReloadFailed] != 0 {
		t.Errorf("pingate_config_reloads_total = %v, want ok %d, refused %d", got, wantOK, wantRefused)
	}
	t.Logf("%d requests answered 00 across %d reloads and %d refusals", answered.Load(), wantOK, wantRefused)
}

// opsKeyStore is a key store with an LMK file and custody log in dir.
type opsKeyStore struct {
	sec gateway.SecurityConfig
}

func newOpsKeyStore(t *testing.T, dir string) opsKeyStore {
	t.Helper()
	lmk := filepath.Join(dir, "lmk")
	if _, err := keystore.WriteLMKFile(lmk, pinblock.AES); err != nil {
		t.Fatal(err)
	}
	ks := opsKeyStore{sec: gateway.SecurityConfig{DevKeys: true, KeyStore: filepath.Join(dir, "keystore.json"),
		CustodyLog: filepath.Join(dir, "custody.log"), LMKFile: lmk, RotationGrace: time.Hour}}
	st, err := keystore.InitStore(keystore.StoreConfig{Path: ks.sec.KeyStore, LogPath: ks.sec.CustodyLog, LMK: keystore.LMKRef{File: lmk}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	return ks
}

// component returns a TDES component and its KCV.
func opsComponent(t *testing.T, hexValue string) pinblock.Component {
	t.Helper()
	k, err := pinblock.ParseHexKey("component", pinblock.UsageZPK, pinblock.TDES, 1, hexValue)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pinblock.ParseComponent(hexValue, k.KCV())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// xorKey is the clear key two components combine to (parity bits aside,
// which TDES ignores).
func xorKey(t *testing.T, id string, version int, a, b string) pinblock.Key {
	t.Helper()
	x, _ := hex.DecodeString(a)
	y, _ := hex.DecodeString(b)
	for i := range x {
		x[i] ^= y[i]
	}
	k, err := pinblock.NewKey(id, pinblock.UsageZPK, pinblock.TDES, version, x)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// opsFieldsUnder builds a PIN change for card c enciphered under key.
func opsFieldsUnder(t *testing.T, c issuersim.Card, terminal string, key pinblock.Key) *iso8583.Fields {
	t.Helper()
	enc := func(pin string) []byte {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Zeroize()
		b, err := pinblock.Encipher(pinblock.Format0, p, c.PAN, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return &iso8583.Fields{
		MTI: iso8583.MTIAuthRequest, PAN: c.PAN, ProcessingCode: iso8583.ProcPINChange, AcquirerID: gateway.DevATMAcquirer,
		TerminalID: terminal, CardAcceptorID: "PINGATE TEST   ", RRN: "000000000001",
		PINBlock: enc(c.PIN), NewPINBlock: enc("4826"),
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(),
	}
}

// TestReloadKeysFromStore: the ATM network's zone PIN key lives in the key
// store. After a rotation in the store and a reload, PIN blocks under the new
// version are accepted and blocks under the previous one still are within
// the grace window; after a reload with the window over, they are not. GET
// /admin/keys shows the versions and KCVs, never key material.
func TestReloadKeysFromStore(t *testing.T) {
	dir := t.TempDir()
	ks := newOpsKeyStore(t, dir)
	st, err := keystore.OpenStore(keystore.StoreConfig{Path: ks.sec.KeyStore, LogPath: ks.sec.CustodyLog,
		LMK: keystore.LMKRef{File: ks.sec.LMKFile}, Grace: ks.sec.RotationGrace})
	if err != nil {
		t.Fatal(err)
	}
	const (
		c1a, c1b = "0123456789ABCDEFFEDCBA9876543210", "1C587F1C13924FEF0101010101010101"
		c2a, c2b = "89ABCDEF01234567F0E1D2C3B4A59687", "2A2A2A2A2A2A2A2A5B5B5B5B5B5B5B5B"
	)
	who := keystore.Custodian{Who: "test", Why: "reload test"}
	if _, err := st.CombineComponents(keystore.CombineRequest{ID: "zpk-atm-store", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES,
		Components: []pinblock.Component{opsComponent(t, c1a), opsComponent(t, c1b)}, Custodian: who}); err != nil {
		t.Fatal(err)
	}
	v1 := xorKey(t, "zpk-atm-store", 1, c1a, c1b)
	v2 := xorKey(t, "zpk-atm-store", 2, c2a, c2b)

	storeCfg := func(grace time.Duration) gateway.Config {
		c := gateway.EmbeddedConfig()
		c.Security = ks.sec
		c.Security.RotationGrace = grace
		c.Routing.Acquirers = append([]routing.AcquirerConfig(nil), c.Routing.Acquirers...)
		c.Routing.Acquirers[0].Keys = map[int]string{1: "zpk-atm-store"}
		return c
	}
	g := opsGateway(t, func(c *gateway.Config) {
		s := storeCfg(time.Hour)
		c.Security, c.Routing = s.Security, s.Routing
	})
	src := &opsSource{}
	g.SetReloadSource(src.get)
	running := func(grace time.Duration) gateway.Config {
		c := storeCfg(grace)
		c.Instance, c.Acquirer.Addr, c.HTTP.Addr = g.Config().Instance, g.Config().Acquirer.Addr, g.Config().HTTP.Addr
		c.Events.JournalDir, c.Reversals.Dir = g.Config().Events.JournalDir, g.Config().Reversals.Dir
		c.Branch, c.Admin = g.Config().Branch, g.Config().Admin
		return c
	}
	adminAddr := g.AdminAddr()

	ctx := context.Background()
	c, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pop := opsPopulation(g.Config().IssuerSim)
	n := 7000
	send := func(key pinblock.Key) string {
		t.Helper()
		n++
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ans, err := c.Do(rctx, opsFieldsUnder(t, pop.Card(n), fmt.Sprintf("KEY%05d", n), key))
		if err != nil {
			t.Fatal(err)
		}
		return ans.ResponseCode
	}
	if code := send(v1); code != iso8583.RCApproved {
		t.Fatalf("PIN change under the stored key v1 = %s, want 00", code)
	}
	if code := send(v2); code == iso8583.RCApproved {
		t.Fatalf("PIN change under a key not yet stored = %s", code)
	}

	// Rotate in the store (as `pingate key rotate` would), then reload.
	if _, err := st.Rotate(keystore.RotateRequest{ID: "zpk-atm-store",
		Components: []pinblock.Component{opsComponent(t, c2a), opsComponent(t, c2b)}, Custodian: who}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if code := send(v2); code == iso8583.RCApproved {
		t.Fatalf("the new version was used before any reload: %s", code)
	}
	resp, err := http.Post("http://"+adminAddr+"/admin/reload", "", nil)
	if err == nil {
		resp.Body.Close()
	}
	// The admin reload had no source yet: refused, nothing changed.
	if err != nil || resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("POST /admin/reload with no source: %v %v, want 422", resp, err)
	}
	src.set(running(time.Hour), nil)
	resp, err = http.Post("http://"+adminAddr+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rep gateway.ReloadReport
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rep.Result != gateway.ReloadOK || rep.Trigger != "admin" {
		t.Fatalf("POST /admin/reload = %d %+v, want 200 ok", resp.StatusCode, rep)
	}
	if code := send(v2); code != iso8583.RCApproved {
		t.Errorf("PIN change under the new version v2 after reload = %s, want 00", code)
	}
	if code := send(v1); code != iso8583.RCApproved {
		t.Errorf("PIN change under v1 within the grace window = %s, want 00", code)
	}

	// /admin/keys lists both versions by KCV.
	resp, err = http.Get("http://" + adminAddr + "/admin/keys")
	if err != nil {
		t.Fatal(err)
	}
	var keys []struct {
		ID      string `json:"id"`
		Version int    `json:"version"`
		KCV     string `json:"kcv"`
	}
	raw := new(strings.Builder)
	_ = json.NewDecoder(teeReader{resp.Body, raw}).Decode(&keys)
	resp.Body.Close()
	kcvs := map[int]string{}
	for _, k := range keys {
		if k.ID == "zpk-atm-store" {
			kcvs[k.Version] = k.KCV
		}
	}
	if kcvs[1] != v1.KCV() || kcvs[2] != v2.KCV() {
		t.Errorf("/admin/keys zpk-atm-store versions %v, want v1 %s and v2 %s", kcvs, v1.KCV(), v2.KCV())
	}
	for _, comp := range []string{c1a, c1b, c2a, c2b} {
		if strings.Contains(strings.ToUpper(raw.String()), comp[:16]) {
			t.Error("/admin/keys shows key material")
		}
	}

	// A reload with a grace window that is over drops v1.
	src.set(running(time.Nanosecond), nil)
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if code := send(v1); code == iso8583.RCApproved {
		t.Errorf("PIN change under v1 after its grace window = %s, want a refusal", code)
	}
	if code := send(v2); code != iso8583.RCApproved {
		t.Errorf("PIN change under v2 = %s, want 00", code)
	}
}

// teeReader copies what is read into w.
type teeReader struct {
	r interface{ Read([]byte) (int, error) }
	w *strings.Builder
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

// TestReloadSIGHUPBinary: the built `pingate serve` reloads its config file
// on SIGHUP — a new acquirer answers — refuses an invalid file and keeps
// serving the previous configuration, and counts both.
func TestReloadSIGHUPBinary(t *testing.T) {
	dir := t.TempDir()
	sim := opsStart(t, "issuer-sim", "--addr", "127.0.0.1:0")
	simAddr := sim.firstLine(t)
	cfgPath := opsServeConfig(t, dir, simAddr, 10*time.Second)
	gw := opsStart(t, "serve", "--config", cfgPath)
	acq, httpAddr, adminAddr := servingAddrs(t, gw.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 10000}
	ctx := context.Background()
	tryAcq := func(i int) string {
		t.Helper()
		c, err := loadgen.Dial(ctx, acq)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		op := opsChange(pop, i, "4826")
		op.Acquirer = secondATMAcquirer
		code, err := opsDo(ctx, c, op)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	waitCount := func(result string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for reloadCounts(t, httpAddr)[result] != want {
			if time.Now().After(deadline) {
				t.Fatalf("reloads %v, want %s = %v\n%s", reloadCounts(t, httpAddr), result, want, opsTail(gw.stderr.String(), 2000))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if code := tryAcq(4000); code != iso8583.RCNotPermittedTerm {
		t.Fatalf("acquirer %s before the reload answered %s", secondATMAcquirer, code)
	}
	added := strings.Replace(string(orig), "  issuers:", `    - {id: "`+secondATMAcquirer+`", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk}, formats: [0]}
  issuers:`, 1)
	if err := os.WriteFile(cfgPath, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCount(gateway.ReloadOK, 1)
	if code := tryAcq(4001); code != iso8583.RCApproved {
		t.Errorf("acquirer added by SIGHUP answered %s, want 00", code)
	}

	if err := os.WriteFile(cfgPath, []byte(added+"no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCount(gateway.ReloadRefused, 1)
	if code := tryAcq(4002); code != iso8583.RCApproved {
		t.Errorf("after a refused reload the added acquirer answered %s, want 00", code)
	}
	if !strings.Contains(gw.stderr.String(), "no_such_key") {
		t.Errorf("the refusal is not logged with its reason:\n%s", opsTail(gw.stderr.String(), 2000))
	}

	// The admin endpoint of the binary: back to the original file.
	if err := os.WriteFile(cfgPath, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+adminAddr+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST /admin/reload = %d, want 200", resp.StatusCode)
	}
	if code := tryAcq(4003); code != iso8583.RCNotPermittedTerm {
		t.Errorf("acquirer removed by the admin reload answered %s", code)
	}
	_ = gw.cmd.Process.Signal(syscall.SIGTERM)
	if code := gw.wait(t, 20*time.Second); code != 0 {
		t.Errorf("serve exited %d", code)
	}
}
