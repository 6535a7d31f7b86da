package payshield_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"pingate/integration/payshield"
	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
)

// addBlockKey puts clear key h (odd parity) into m's keys as a key block
// under the simulator's test key-block LMK with key usage ku and mode of use
// mode, as a key ceremony would load it.
func addBlockKey(t *testing.T, m *payshield.Module, id string, u pinblock.Usage, ku string, mode byte, h string) pinblock.Key {
	t.Helper()
	tok, err := hsmsim.WrapUnderTestKeyBlockLMK(ku, mode, mustHexB(h))
	if err != nil {
		t.Fatal(err)
	}
	k := clearKey(t, id, u, h)
	if _, err := m.Keys().Add(payshield.Key{ID: id, Usage: u, Algorithm: pinblock.TDES, Length: 16, Token: tok, KCV: k.KCV()}, false); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSimKeyBlockLMK runs the module against the simulator on the test
// key-block LMK, with the LMK named (%01) in each command: keys generated
// (A0, also under a ZMK) and imported (A6 with the key-block fields) come
// back as key blocks of the usage asked with the HSM's KCV; BU agrees; CA,
// CC, a pair and JG translate under key blocks to PIN blocks that decode to
// the PIN; A4 forms a ZMK from key-block components; and a key block whose
// usage or mode of use does not fit is refused before the HSM is asked.
func TestSimKeyBlockLMK(t *testing.T) {
	_, addr := startSim(t, hsmsim.Config{HeaderLen: 4, KeyBlock: true})
	m := newModule(t, payshield.Config{Hosts: []string{addr}, KeyBlockLMK: true, LMKID: "01"})
	ctx := context.Background()
	addBlockKey(t, m, "zmk", pinblock.UsageZMK, "K0", 'B', zmkHex)

	// A0 mode 1: a ZPK under the LMK and under the ZMK.
	info, under, err := m.GenerateExport(ctx, "zpk-gen", pinblock.UsageZPK, 16, pinblock.KeyRef{ID: "zmk"})
	if err != nil {
		t.Fatalf("GenerateExport = %v", err)
	}
	gen, err := pinblock.NewKey("zpk-gen", pinblock.UsageZPK, pinblock.TDES, 1, ecb(t, zmkHex, under, true))
	if err != nil {
		t.Fatal(err)
	}
	if gen.KCV() != info.KCV {
		t.Fatalf("A0 KCV = %s, the key under the ZMK has %s", info.KCV, gen.KCV())
	}
	k, _ := m.Keys().Lookup(pinblock.KeyRef{ID: "zpk-gen"})
	if h, ok := k.BlockHeader(); !ok || h.KeyUsage != "P0" || h.ModeOfUse != 'B' || h.LMKID != "01" || h.Version != '0' {
		t.Fatalf("generated ZPK header = %+v (key block %v), want P0, mode B, LMK 01", h, ok)
	}
	if kcv, err := m.KCV(ctx, pinblock.KeyRef{ID: "zpk-gen"}); err != nil || kcv != info.KCV {
		t.Fatalf("BU = %s, %v; want %s", kcv, err, info.KCV)
	}
	// A0 mode 0 for the other usages.
	for _, u := range []pinblock.Usage{pinblock.UsageZMK, pinblock.UsageTPK, pinblock.UsagePVK} {
		gi, err := m.Generate(ctx, "gen-"+string(u), u, pinblock.TDES, 16)
		if err != nil {
			t.Fatalf("Generate(%s) = %v", u, err)
		}
		if kcv, err := m.KCV(ctx, pinblock.KeyRef{ID: gi.ID}); err != nil || kcv != gi.KCV {
			t.Errorf("BU(%s) = %s, %v; want %s", u, kcv, err, gi.KCV)
		}
	}

	// A6: the development ZPK under the ZMK, with its KCV; a wrong KCV is refused.
	zpk := clearKey(t, "zpk", pinblock.UsageZPK, zpkHex)
	req := pinblock.ImportRequest{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES,
		Enciphered: ecb(t, zmkHex, mustHexB(zpkHex), false), ZMK: pinblock.KeyRef{ID: "zmk"}, KCV: "000000"}
	if _, err := m.Import(ctx, req); !errors.Is(err, pinblock.ErrKCVMismatch) {
		t.Fatalf("Import with a wrong KCV = %v, want ErrKCVMismatch", err)
	}
	req.KCV = zpk.KCV()
	if got, err := m.Import(ctx, req); err != nil || got.KCV != zpk.KCV() {
		t.Fatalf("Import(ZPK, A6) = %+v, %v; want KCV %s", got, err, zpk.KCV())
	}

	// CA: TPK (key usage 71) → ZPK; CC: ZPK → ZPK; a pair in flight; JG.
	tpk := addBlockKey(t, m, "tpk", pinblock.UsageTPK, "71", 'N', "0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7")
	out, err := m.Translate(ctx, pinblock.TranslateRequest{From: pinblock.KeyRef{ID: "tpk"}, FromFormat: pinblock.Format0,
		To: pinblock.KeyRef{ID: "zpk"}, ToFormat: pinblock.Format0, PAN: pan, Block: encipher(t, pinblock.Format0, "1234", tpk)})
	if err != nil {
		t.Fatalf("Translate(CA) = %v", err)
	}
	decodesTo(t, "CA", pinblock.Format0, out, zpk, "1234")
	p := pinblock.PairRequest{From: pinblock.KeyRef{ID: "zpk"}, FromFormat: pinblock.Format0, To: pinblock.KeyRef{ID: "zpk-gen"},
		ToFormat: pinblock.Format3, PAN: pan, Old: encipher(t, pinblock.Format0, "1234", zpk), New: encipher(t, pinblock.Format0, "98765", zpk)}
	o, n, err := m.TranslatePair(ctx, p)
	if err != nil {
		t.Fatalf("TranslatePair(CC) = %v", err)
	}
	decodesTo(t, "CC old", pinblock.Format3, o, gen, "1234")
	decodesTo(t, "CC new", pinblock.Format3, n, gen, "98765")
	g, err := m.GeneratePIN(ctx, pinblock.GeneratePINRequest{To: pinblock.KeyRef{ID: "zpk"}, ToFormat: pinblock.Format0, PAN: pan, Length: 6})
	if err != nil {
		t.Fatalf("GeneratePIN(JA, JG) = %v", err)
	}
	if pin, err := pinblock.Decipher(pinblock.Format0, g.Block, pan, zpk); err != nil || pin.Len() != 6 {
		t.Fatalf("JG block does not decode to a 6-digit PIN under the ZPK: %v", err)
	}

	// Refused before the HSM: a ZMK as a translation's source, a ZPK that
	// may only encipher as the source, one that may only decipher as the
	// destination.
	addBlockKey(t, m, "zpk-enc", pinblock.UsageZPK, "P0", 'E', zpkHex)
	addBlockKey(t, m, "zpk-dec", pinblock.UsageZPK, "P0", 'D', zpkHex)
	tok, _ := hsmsim.WrapUnderTestKeyBlockLMK("K0", 'B', mustHexB(zpkHex))
	if _, err := m.Keys().Add(payshield.Key{ID: "zpk-is-zmk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Token: tok, KCV: zpk.KCV()}, false); err != nil {
		t.Fatal(err)
	}
	before := m.Client().Stats()[0].Commands
	for _, tt := range []struct{ from, to string }{{"zpk-is-zmk", "zpk"}, {"zpk-enc", "zpk"}, {"zpk", "zpk-dec"}} {
		_, err := m.Translate(ctx, pinblock.TranslateRequest{From: pinblock.KeyRef{ID: tt.from}, FromFormat: pinblock.Format0,
			To: pinblock.KeyRef{ID: tt.to}, ToFormat: pinblock.Format0, PAN: pan, Block: p.Old})
		if !errors.Is(err, pinblock.ErrKeyUsage) {
			t.Errorf("Translate(%s → %s) = %v, want ErrKeyUsage", tt.from, tt.to, err)
		}
	}
	if after := m.Client().Stats()[0].Commands; after != before {
		t.Errorf("%d commands reached the HSM for refused translations", after-before)
	}

	// A4: a ZMK from two key-block components.
	c1, c2 := zmkHex, "0E1F2A3B4C5D6E7F8091A2B3C4D5E6F7"
	var toks, kcvs []string
	for _, h := range []string{c1, c2} {
		tok, err := hsmsim.WrapUnderTestKeyBlockLMK("K0", 'B', mustHexB(h))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		kcvs = append(kcvs, clearKey(t, "c", pinblock.UsageZMK, h).KCV())
	}
	formed := xorHex(t, c1, c2)
	pinblock.SetOddParity(formed)
	want := clearKey(t, "f", pinblock.UsageZMK, strings.ToUpper(hex.EncodeToString(formed))).KCV()
	fi, _, err := m.FormKey(ctx, payshield.FormRequest{ID: "zmk-formed", Usage: pinblock.UsageZMK, Components: toks, KCVs: kcvs})
	if err != nil || fi.KCV != want {
		t.Fatalf("FormKey(A4, key blocks) = %+v, %v; want KCV %s", fi, err, want)
	}

	// Another LMK named than the HSM holds: the HSM refuses (error 15).
	other := newModule(t, payshield.Config{Hosts: []string{addr}, KeyBlockLMK: true, LMKID: "02"})
	addBlockKey(t, other, "zmk", pinblock.UsageZMK, "K0", 'B', zmkHex)
	if _, err := other.KCV(ctx, pinblock.KeyRef{ID: "zmk"}); !errors.Is(err, payshield.ErrProtocol) {
		t.Errorf("BU naming LMK 02 = %v, want ErrProtocol (HSM error 15)", err)
	}
}

// TestImportThalesKeyBlockRecorded imports, through the module and the
// simulator on the test key-block LMK, the ZPK key block under a ZMK of the
// A6 recorded from a payShield (hsmsim/testdata/keyblock_vectors.json, from
// softwaregroup-bg/ut-codec-payshield): the HSM's KCV is the recorded one,
// the key block under the LMK keeps the block's usage and exportability; a
// wrong KCV, a block of another usage and a TR-31 block are refused, and
// under a variant LMK any key block is ErrNotSupported.
func TestImportThalesKeyBlockRecorded(t *testing.T) {
	raw, err := os.ReadFile("hsmsim/testdata/keyblock_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Blocks []struct{ Token, KCV string } `json:"blocks"`
		A6     struct{ Request, KCV string } `json:"a6"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	zmk := v.Blocks[1]                                                   // the recorded ZMK, KCV 2356F2
	block := strings.TrimSuffix(v.A6.Request[5+len(zmk.Token):], "S%01") // the key block under it
	_, addr := startSim(t, hsmsim.Config{HeaderLen: 4, KeyBlock: true})
	m := newModule(t, payshield.Config{Hosts: []string{addr}, KeyBlockLMK: true})
	ctx := context.Background()
	if _, err := m.Keys().Add(payshield.Key{ID: "zmk", Usage: pinblock.UsageZMK, Algorithm: pinblock.TDES, Length: 16, Token: zmk.Token, KCV: zmk.KCV}, false); err != nil {
		t.Fatal(err)
	}
	req := pinblock.ImportRequest{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, KeyBlock: block, ZMK: pinblock.KeyRef{ID: "zmk"}, KCV: "000000"}
	if _, err := m.Import(ctx, req); !errors.Is(err, pinblock.ErrKCVMismatch) {
		t.Errorf("Import with a wrong KCV = %v, want ErrKCVMismatch", err)
	}
	req.Usage = pinblock.UsagePVK
	req.KCV = v.A6.KCV
	if _, err := m.Import(ctx, req); !errors.Is(err, pinblock.ErrKeyUsage) {
		t.Errorf("Import of a P0 block as a PVK = %v, want ErrKeyUsage", err)
	}
	req.Usage = pinblock.UsageZPK
	info, err := m.Import(ctx, req)
	if err != nil || info.KCV != v.A6.KCV {
		t.Fatalf("Import(recorded key block) = %+v, %v; want KCV %s", info, err, v.A6.KCV)
	}
	k, _ := m.Keys().Lookup(pinblock.KeyRef{ID: "zpk"})
	if h, ok := k.BlockHeader(); !ok || h.KeyUsage != "P0" || h.Exportability != 'N' || h.LMKID != "01" {
		t.Errorf("imported key block header %+v, want P0, not exportable, LMK 01", h)
	}
	if kcv, err := m.KCV(ctx, pinblock.KeyRef{ID: "zpk"}); err != nil || kcv != v.A6.KCV {
		t.Errorf("BU(imported) = %s, %v; want %s", kcv, err, v.A6.KCV)
	}
	tr31 := pinblock.ImportRequest{ID: "k", Usage: pinblock.UsageZPK, KeyBlock: "A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24D52C8D44AAEDA6D81752022B", ZMK: pinblock.KeyRef{ID: "zmk"}, KCV: "000000"}
	if _, err := m.Import(ctx, tr31); !errors.Is(err, payshield.ErrNotSupported) {
		t.Errorf("Import(TR-31 block) = %v, want ErrNotSupported", err)
	}
	_, vaddr := startSim(t, hsmsim.Config{HeaderLen: 4})
	vm := newModule(t, payshield.Config{Hosts: []string{vaddr}})
	if _, err := vm.Import(ctx, req); !errors.Is(err, payshield.ErrNotSupported) {
		t.Errorf("Import(key block) under a variant LMK = %v, want ErrNotSupported", err)
	}
}
