package payshield_test

import (
	"context"
	"crypto/des"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pingate/integration/payshield"
	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
)

// Development keys with odd DES parity, as a key ceremony would load them.
const (
	zmkHex = "0123456789ABCDEFFEDCBA9876543210"
	zpkHex = "89ABCDEF01234567FEDCBA9876543210"
	pan    = "4000001234567899"
)

func startSim(t *testing.T, cfg hsmsim.Config) (*hsmsim.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := hsmsim.New(cfg)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, ln.Addr().String()
}

func newModule(t *testing.T, cfg payshield.Config) *payshield.Module {
	t.Helper()
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = -1
	}
	c, err := payshield.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return payshield.NewModule(c, payshield.NewKeys(time.Hour))
}

func clearKey(t *testing.T, id string, u pinblock.Usage, h string) pinblock.Key {
	t.Helper()
	k, err := pinblock.ParseHexKey(id, u, pinblock.TDES, 1, h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// loadZMK puts the development ZMK under the simulator's LMK into m's keys.
func loadZMK(t *testing.T, s *hsmsim.Server, m *payshield.Module) {
	t.Helper()
	raw, _ := hex.DecodeString(zmkHex)
	tok, err := s.EncipherUnderLMK("000", raw)
	if err != nil {
		t.Fatal(err)
	}
	zmk := clearKey(t, "zmk", pinblock.UsageZMK, zmkHex)
	if _, err := m.Keys().Add(payshield.Key{ID: "zmk", Usage: pinblock.UsageZMK, Algorithm: pinblock.TDES, Length: 16, Token: tok, KCV: zmk.KCV()}, false); err != nil {
		t.Fatal(err)
	}
}

func ecb(t *testing.T, keyHex string, data []byte, decrypt bool) []byte {
	t.Helper()
	k, _ := hex.DecodeString(keyHex)
	k = append(k, k[:8]...)
	b, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	for i := 0; i < len(data); i += 8 {
		if decrypt {
			b.Decrypt(out[i:], data[i:i+8])
		} else {
			b.Encrypt(out[i:], data[i:i+8])
		}
	}
	return out
}

// importZPK brings the development ZPK in through FA under the ZMK.
func importZPK(t *testing.T, m *payshield.Module, id string) pinblock.Key {
	t.Helper()
	zpk := clearKey(t, id, pinblock.UsageZPK, zpkHex)
	raw, _ := hex.DecodeString(zpkHex)
	info, err := m.Import(context.Background(), pinblock.ImportRequest{
		ID: id, Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES,
		Enciphered: ecb(t, zmkHex, raw, false), ZMK: pinblock.KeyRef{ID: "zmk"}, KCV: zpk.KCV(),
	})
	if err != nil {
		t.Fatalf("Import(ZPK via FA) = %v", err)
	}
	if info.KCV != zpk.KCV() {
		t.Fatalf("Import KCV = %s, want %s", info.KCV, zpk.KCV())
	}
	return zpk
}

// generateTPK makes a TPK in the HSM (A0 mode 1) and recovers its clear
// value from its copy under the ZMK: test-only, to play the terminal.
func generateTPK(t *testing.T, m *payshield.Module, id string) pinblock.Key {
	t.Helper()
	info, under, err := m.GenerateExport(context.Background(), id, pinblock.UsageTPK, 16, pinblock.KeyRef{ID: "zmk"})
	if err != nil {
		t.Fatalf("GenerateExport(TPK) = %v", err)
	}
	raw := ecb(t, zmkHex, under, true)
	tpk, err := pinblock.NewKey(id, pinblock.UsageTPK, pinblock.TDES, 1, raw)
	if err != nil {
		t.Fatal(err)
	}
	if tpk.KCV() != info.KCV {
		t.Fatalf("A0 KCV = %s, the key under the ZMK has %s", info.KCV, tpk.KCV())
	}
	return tpk
}

func encipher(t *testing.T, f pinblock.Format, digits string, k pinblock.Key) []byte {
	t.Helper()
	p, err := pinblock.NewSecretPIN(digits)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pinblock.Encipher(f, p, pan, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodesTo(t *testing.T, what string, f pinblock.Format, block []byte, k pinblock.Key, digits string) {
	t.Helper()
	p, err := pinblock.Decipher(f, block, pan, k)
	if err != nil {
		t.Fatalf("%s: the translated block does not decipher under the destination key: %v", what, err)
	}
	if p.Reveal() != digits {
		t.Fatalf("%s: the translated block holds a different PIN", what)
	}
}

func TestSimDiagnosticsAndEcho(t *testing.T) {
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 4})
	m := newModule(t, payshield.Config{Hosts: []string{addr}})
	d, err := m.Client().Diagnostics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.LMKCheck != s.LMKCheckValue() || d.Firmware == "" {
		t.Fatalf("NC = %+v, want LMK check %s", d, s.LMKCheckValue())
	}
	if err := m.Client().Echo(context.Background(), "pingate echo"); err != nil {
		t.Fatalf("B2 = %v", err)
	}
}

func TestSimTranslateTPKToZPK(t *testing.T) {
	tests := []struct {
		from, to pinblock.Format
	}{
		{pinblock.Format0, pinblock.Format0},
		{pinblock.Format0, pinblock.Format3},
		{pinblock.Format1, pinblock.Format0},
		{pinblock.Format3, pinblock.Format0},
		{pinblock.Format1, pinblock.Format1},
	}
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 6})
	m := newModule(t, payshield.Config{Hosts: []string{addr}, HeaderLen: 6})
	loadZMK(t, s, m)
	tpk := generateTPK(t, m, "tpk")
	zpk := importZPK(t, m, "zpk")
	for _, tt := range tests {
		block := encipher(t, tt.from, "4921", tpk)
		out, err := m.Translate(context.Background(), pinblock.TranslateRequest{
			PAN: pan, Block: block, From: pinblock.KeyRef{ID: "tpk"}, FromFormat: tt.from,
			To: pinblock.KeyRef{ID: "zpk"}, ToFormat: tt.to,
		})
		if err != nil {
			t.Fatalf("Translate(%s→%s via CA) = %v", tt.from, tt.to, err)
		}
		decodesTo(t, fmt.Sprintf("CA %s→%s", tt.from, tt.to), tt.to, out, zpk, "4921")
	}
}

// TestSimPairInFlight runs many PIN changes at once over one connection:
// each pair's two commands are in flight together and the responses are
// matched by header, so every card gets its own PINs back.
func TestSimPairInFlight(t *testing.T) {
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 4})
	m := newModule(t, payshield.Config{Hosts: []string{addr}, Connections: 1})
	loadZMK(t, s, m)
	zpkIn := importZPK(t, m, "acq-zpk")
	zpkOut := importZPK(t, m, "iss-zpk")
	tr, err := m.Prepare(context.Background(), pinblock.Route{
		From: pinblock.KeyRef{ID: "acq-zpk"}, FromFormat: pinblock.Format0,
		To: pinblock.KeyRef{ID: "iss-zpk"}, ToFormat: pinblock.Format3,
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			oldPIN, newPIN := fmt.Sprintf("%04d", 1000+i), fmt.Sprintf("%06d", 500000+i)
			buf := make([]byte, pinblock.BufferSize)
			o, nw, err := tr.TranslatePair(context.Background(), buf, pinblock.PairBlocks{
				PAN: pan, Old: encipher(t, pinblock.Format0, oldPIN, zpkIn), New: encipher(t, pinblock.Format0, newPIN, zpkIn),
			})
			if err != nil {
				errs <- err
				return
			}
			po, err1 := pinblock.Decipher(pinblock.Format3, o, pan, zpkOut)
			pn, err2 := pinblock.Decipher(pinblock.Format3, nw, pan, zpkOut)
			if err1 != nil || err2 != nil || po.Reveal() != oldPIN || pn.Reveal() != newPIN {
				errs <- fmt.Errorf("pair %d: the translated blocks do not hold the card's own PINs", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSimRefusals(t *testing.T) {
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 4})
	m := newModule(t, payshield.Config{Hosts: []string{addr}})
	loadZMK(t, s, m)
	zpk := importZPK(t, m, "zpk")
	importZPK(t, m, "zpk2")
	// An AES (or SM4) key is refused, never translated in software.
	if _, err := m.Keys().Add(payshield.Key{ID: "aes", Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Length: 16, Token: "S0000"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Keys().Add(payshield.Key{ID: "sm4", Usage: pinblock.UsageZPK, Algorithm: pinblock.SM4, Length: 16, Token: "S0001"}, false); err != nil {
		t.Fatal(err)
	}
	// A key whose clear value has even parity: the HSM answers 11.
	even, _ := hex.DecodeString("00000000000000001111111111111111")
	tok, _ := s.EncipherUnderLMK("001", even)
	if _, err := m.Keys().Add(payshield.Key{ID: "even", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: tok}, false); err != nil {
		t.Fatal(err)
	}
	ff := make([]byte, 8)
	for i := range ff {
		ff[i] = 0xFF
	}
	bad := ecb(t, zpkHex, ff, false) // control nibble F: not a format 0 block
	good := encipher(t, pinblock.Format0, "1234", zpk)
	tests := []struct {
		name      string
		give      pinblock.TranslateRequest
		want      error
		wantAlert bool
	}{
		{"PCI 3-3 0→1", pinblock.TranslateRequest{PAN: pan, Block: good, From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "zpk2"}, ToFormat: pinblock.Format1}, pinblock.ErrForbiddenTranslation, false},
		{"ISO 4", pinblock.TranslateRequest{PAN: pan, Block: good, From: pinblock.KeyRef{ID: "zpk"}, FromFormat: pinblock.Format4, To: pinblock.KeyRef{ID: "zpk2"}, ToFormat: pinblock.Format4}, pinblock.ErrUnsupportedFormat, false},
		{"AES key", pinblock.TranslateRequest{PAN: pan, Block: good, From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "aes"}}, payshield.ErrAlgorithm, false},
		{"SM4 key out", pinblock.TranslateRequest{PAN: pan, Block: good, From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "sm4"}, ToFormat: pinblock.Format4SM4}, payshield.ErrAlgorithm, false},
		{"SM4 key in", pinblock.TranslateRequest{PAN: pan, Block: make([]byte, 16), From: pinblock.KeyRef{ID: "sm4"}, FromFormat: pinblock.Format0SM4, To: pinblock.KeyRef{ID: "zpk2"}}, payshield.ErrAlgorithm, false},
		{"unknown key", pinblock.TranslateRequest{PAN: pan, Block: good, From: pinblock.KeyRef{ID: "nope"}, To: pinblock.KeyRef{ID: "zpk2"}}, pinblock.ErrUnknownKey, false},
		{"invalid block (20)", pinblock.TranslateRequest{PAN: pan, Block: bad, From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "zpk2"}}, pinblock.ErrInvalidPINBlock, false},
		{"parity (11)", pinblock.TranslateRequest{PAN: pan, Block: good, From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "even"}}, pinblock.ErrInvalidKey, true},
		{"PAN", pinblock.TranslateRequest{PAN: "12x4", Block: good, From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "zpk2"}}, pinblock.ErrInvalidPAN, false},
	}
	for _, tt := range tests {
		_, err := m.Translate(context.Background(), tt.give)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Translate = %v, want %v", tt.name, err, tt.want)
		}
		if payshield.IsAlert(err) != tt.wantAlert {
			t.Errorf("%s: IsAlert = %v, want %v", tt.name, payshield.IsAlert(err), tt.wantAlert)
		}
	}
	// A wrong KCV on import: refused and not kept.
	raw, _ := hex.DecodeString(zpkHex)
	_, err := m.Import(context.Background(), pinblock.ImportRequest{ID: "zpk3", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES,
		Enciphered: ecb(t, zmkHex, raw, false), ZMK: pinblock.KeyRef{ID: "zmk"}, KCV: "000000"})
	if !errors.Is(err, pinblock.ErrKCVMismatch) {
		t.Errorf("Import(wrong KCV) = %v, want ErrKCVMismatch", err)
	}
	if _, err := m.Keys().Lookup(pinblock.KeyRef{ID: "zpk3"}); !errors.Is(err, pinblock.ErrUnknownKey) {
		t.Errorf("a key whose KCV did not match was kept")
	}
	if kcv, err := m.KCV(context.Background(), pinblock.KeyRef{ID: "zpk"}); err != nil || kcv != zpk.KCV() {
		t.Errorf("KCV(BU) = %q, %v, want %s", kcv, err, zpk.KCV())
	}
}

func TestSimGeneratedPINAndMailer(t *testing.T) {
	dir := t.TempDir()
	printer, err := pinblock.NewSpoolPrinter(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 4, Printer: printer})
	m := newModule(t, payshield.Config{Hosts: []string{addr}})
	loadZMK(t, s, m)
	zpk := importZPK(t, m, "zpk")
	g, err := m.GeneratePIN(context.Background(), pinblock.GeneratePINRequest{PAN: pan, Length: 6, To: pinblock.KeyRef{ID: "zpk"}, ToFormat: pinblock.Format0})
	if err != nil {
		t.Fatalf("GeneratePIN(JA+JG) = %v", err)
	}
	p, err := pinblock.Decipher(pinblock.Format0, g.Block, pan, zpk)
	if err != nil || p.Len() != 6 {
		t.Fatalf("the generated block does not decipher to a 6-digit PIN: %v", err)
	}
	if err := m.PrintMailer(context.Background(), pinblock.MailerRequest{PAN: pan, Sealed: g.Sealed, Reference: "op-1", AddressLines: []string{"Branch 7"}}); err != nil {
		t.Fatalf("PrintMailer(PE) = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "op-1"+pinblock.MailerFileSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "Your new PIN: "+p.Reveal()+"\n") || !strings.Contains(string(b), "Branch 7") {
		t.Fatal("the mailer does not carry the PIN the issuer was sent, or its address")
	}
}

// TestSimFailover: with one of two HSMs gone, translations go to the other
// and every answer is right; a key generation is not retried elsewhere.
func TestSimFailover(t *testing.T) {
	a, addrA := startSim(t, hsmsim.Config{HeaderLen: 4})
	_, addrB := startSim(t, hsmsim.Config{HeaderLen: 4})
	m := newModule(t, payshield.Config{Hosts: []string{addrA, addrB}})
	loadZMK(t, a, m) // both simulators share the test LMK
	zpk := importZPK(t, m, "zpk")
	importZPK(t, m, "zpk2")
	zpk2 := clearKey(t, "zpk2", pinblock.UsageZPK, zpkHex)
	_ = zpk
	a.Close()
	for i := range 10 {
		out, err := m.Translate(context.Background(), pinblock.TranslateRequest{PAN: pan, Block: encipher(t, pinblock.Format0, "2468", zpk),
			From: pinblock.KeyRef{ID: "zpk"}, To: pinblock.KeyRef{ID: "zpk2"}})
		if err != nil {
			t.Fatalf("translation %d with one HSM down = %v", i, err)
		}
		decodesTo(t, "failover", pinblock.Format0, out, zpk2, "2468")
	}
	st := m.Client().Stats()
	if st[0].Healthy || !st[1].Healthy {
		t.Errorf("Stats healthy = %v, %v; want the closed HSM removed", st[0].Healthy, st[1].Healthy)
	}
	if err := m.Client().Ready(); err != nil {
		t.Errorf("Ready = %v with one HSM up", err)
	}
}

func TestNoReachableHSM(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	m := newModule(t, payshield.Config{Hosts: []string{addr}})
	_, err := m.Client().Diagnostics(context.Background())
	if !errors.Is(err, pinblock.ErrModuleUnavailable) {
		t.Fatalf("Diagnostics with no HSM = %v, want ErrModuleUnavailable", err)
	}
	if err := m.Client().Ready(); !errors.Is(err, pinblock.ErrModuleUnavailable) {
		t.Fatalf("Ready with no HSM = %v, want ErrModuleUnavailable", err)
	}
}

func TestImportKeyBlockRefused(t *testing.T) {
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 4})
	m := newModule(t, payshield.Config{Hosts: []string{addr}})
	loadZMK(t, s, m)
	_, err := m.Import(context.Background(), pinblock.ImportRequest{ID: "k", Usage: pinblock.UsageZPK, KeyBlock: "B0080P0TE00N0000", ZMK: pinblock.KeyRef{ID: "zmk"}, Rotate: true})
	if !errors.Is(err, payshield.ErrNotSupported) {
		t.Fatalf("Import(TR-31 block) = %v, want ErrNotSupported", err)
	}
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func mustHexB(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestHealthRemovesAndReadmits: an HSM that stops answering is removed by
// the health checks (Ready fails with it the only one) and re-admitted once
// it answers NC again on the same address.
func TestHealthRemovesAndReadmits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := hsmsim.New(hsmsim.Config{HeaderLen: 4})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	c, err := payshield.New(payshield.Config{Hosts: []string{addr}, HealthInterval: 10 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("%s did not happen within 10s", what)
	}
	waitFor("first health check", func() bool { return c.Stats()[0].Commands > 0 })
	if err := c.Ready(); err != nil {
		t.Fatalf("Ready with the HSM up = %v", err)
	}
	s.Close()
	<-done
	waitFor("removal", func() bool { return c.Ready() != nil })
	if err := c.Ready(); !errors.Is(err, pinblock.ErrModuleUnavailable) {
		t.Fatalf("Ready with no HSM = %v, want ErrModuleUnavailable", err)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	s2 := hsmsim.New(hsmsim.Config{HeaderLen: 4})
	done2 := make(chan struct{})
	go func() { defer close(done2); _ = s2.Serve(ln2) }()
	defer func() { s2.Close(); <-done2 }()
	waitFor("re-admission", func() bool { return c.Ready() == nil })
	if st := c.Stats()[0]; st.Errors["transport"] == 0 {
		t.Errorf("Stats errors = %v, want the transport failures counted", st.Errors)
	}
}

// xorHex XORs equal-length hex strings.
func xorHex(t *testing.T, hs ...string) []byte {
	t.Helper()
	out := mustHexB(hs[0])
	for _, h := range hs[1:] {
		b := mustHexB(h)
		for i := range out {
			out[i] ^= b[i]
		}
	}
	return out
}

// TestSimFormKeyFromComponents: three ZMK components under the LMK, whose
// XOR is the payShield 10k example key of openemv/tr31 (KCV 5C9405,
// published), form that key through A4; each component's check value is
// the HSM's (BU), and a wrong one stops the ceremony before A4.
func TestSimFormKeyFromComponents(t *testing.T) {
	s, addr := startSim(t, hsmsim.Config{HeaderLen: 4})
	m := newModule(t, payshield.Config{Hosts: []string{addr}})
	const (
		published    = "5DB50B454F8389ADCE573BE50861F2BF" // openemv/tr31 test1, KCV 5C9405
		publishedKCV = "5C9405"
		c1           = zmkHex                             // KCV 08D7B4 (published, see pinblock/kcv_test.go)
		c2           = "0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7" // odd parity
	)
	c3 := strings.ToUpper(hex.EncodeToString(xorHex(t, published, c1, c2)))
	var toks, kcvs []string
	for _, h := range []string{c1, c2, c3} {
		tok, err := s.EncipherUnderLMK("000", mustHexB(h))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		kcvs = append(kcvs, clearKey(t, "c", pinblock.UsageZMK, h).KCV())
	}
	if kcvs[0] != "08D7B4" {
		t.Fatalf("component 1 KCV = %s, want the published 08D7B4", kcvs[0])
	}
	ctx := context.Background()

	bad := append([]string(nil), kcvs...)
	bad[1] = kcvs[0]
	if _, _, err := m.FormKey(ctx, payshield.FormRequest{ID: "zmk-x", Usage: pinblock.UsageZMK, Components: toks, KCVs: bad}); !errors.Is(err, pinblock.ErrKCVMismatch) || !strings.Contains(err.Error(), "component 2") {
		t.Errorf("FormKey with a wrong KCV on component 2 = %v, want ErrKCVMismatch naming component 2", err)
	}
	if _, err := m.Keys().Lookup(pinblock.KeyRef{ID: "zmk-x"}); err == nil {
		t.Error("a refused ceremony left a key behind")
	}
	if _, _, err := m.FormKey(ctx, payshield.FormRequest{ID: "zmk-x", Usage: pinblock.UsageZMK, Components: toks[:1], KCVs: kcvs[:1]}); !errors.Is(err, pinblock.ErrInvalidKey) {
		t.Errorf("FormKey with one component = %v, want ErrInvalidKey", err)
	}
	even, _ := s.EncipherUnderLMK("000", xorHex(t, c1, c2)) // two odd-parity keys XOR to even parity
	if _, _, err := m.FormKey(ctx, payshield.FormRequest{ID: "zmk-x", Usage: pinblock.UsageZMK, Components: []string{toks[0], even}, KCVs: []string{kcvs[0], clearKey(t, "c", pinblock.UsageZMK, strings.ToUpper(hex.EncodeToString(xorHex(t, c1, c2)))).KCV()}}); !errors.Is(err, pinblock.ErrInvalidKey) {
		t.Errorf("FormKey with a component of even parity = %v, want ErrInvalidKey (HSM error 11)", err)
	}

	info, got, err := m.FormKey(ctx, payshield.FormRequest{ID: "zmk-x", Usage: pinblock.UsageZMK, Components: toks, KCVs: []string{kcvs[0], strings.ToLower(kcvs[1][:4]), kcvs[2]}})
	if err != nil {
		t.Fatalf("FormKey = %v", err)
	}
	if info.KCV != publishedKCV || info.Usage != pinblock.UsageZMK || info.Version != 1 {
		t.Errorf("FormKey = %+v, want ZMK v1 with the published KCV %s", info, publishedKCV)
	}
	for i := range kcvs {
		if got[i] != kcvs[i] {
			t.Errorf("component %d: the HSM's KCV %s, want %s", i+1, got[i], kcvs[i])
		}
	}
	// The formed ZMK works: a ZPK under the published key imports with FA.
	zpk := clearKey(t, "zpk", pinblock.UsageZPK, zpkHex)
	enc := ecb(t, published, mustHexB(zpkHex), false)
	if _, err := m.Import(ctx, pinblock.ImportRequest{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Enciphered: enc, ZMK: pinblock.KeyRef{ID: "zmk-x"}, KCV: zpk.KCV()}); err != nil {
		t.Errorf("Import under the formed ZMK = %v", err)
	}
	if kcv, err := m.KCV(ctx, pinblock.KeyRef{ID: "zmk-x"}); err != nil || kcv != publishedKCV {
		t.Errorf("KCV(formed ZMK) = %s, %v; want %s", kcv, err, publishedKCV)
	}
}
