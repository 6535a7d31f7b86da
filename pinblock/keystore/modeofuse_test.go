package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/pinblock"
)

// tr31A722Block is the published TR-31:2018 A.7.2.2 block: the A.7.2.1 key
// (KCV 57C409) as P0, mode of use E (encrypt only), under the KBPK
// DD7515F2BFC17F85CE48F3CA25CB21F6.
const tr31A722Block = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"

// TestStoreKeepsModeOfUse: a key imported from a block keeps the block's
// mode of use in the store (List, Load), in the custody record of the
// import, and in the block export writes; a rotation from material with no
// mode (generated here) keeps it.
func TestStoreKeepsModeOfUse(t *testing.T) {
	ts := newTestStore(t, pinblock.AES)
	zmkT := tr31Hex(t, "DD7515F2BFC17F85CE48F3CA25CB21F6")
	if _, err := ts.CombineComponents(CombineRequest{ID: "zmk-t", Algorithm: pinblock.TDES, Components: components(t, pinblock.TDES, zmkT), Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ImportTR31(TR31ImportRequest{ID: "zpk-e", KBPK: "zmk-t", Block: tr31A722Block, Custodian: alice}); err != nil {
		t.Fatalf("ImportTR31(P0 E) error = %v", err)
	}
	modes := func() map[string]pinblock.ModeOfUse {
		t.Helper()
		keys, err := ts.List()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]pinblock.ModeOfUse{}
		for _, k := range keys {
			m[k.ID+" v"+tr31Itoa(k.Version)] = k.ModeOfUse
		}
		return m
	}
	if got := modes(); got["zpk-e v1"] != 'E' || got["zmk-t v1"] != 'B' {
		t.Errorf("List() modes = %q, want zpk-e v1 E, zmk-t v1 B", got)
	}
	kr := pinblock.NewKeyring(time.Hour)
	defer kr.Zeroize()
	if _, err := ts.Load(kr, ts.now); err != nil {
		t.Fatal(err)
	}
	if k, err := kr.Lookup(pinblock.KeyRef{ID: "zpk-e"}, ts.now); err != nil || k.ModeOfUse() != 'E' || k.Permits(pinblock.OpDecrypt) == nil || k.Permits(pinblock.OpEncrypt) != nil {
		t.Errorf("loaded zpk-e: mode %v (%v); want E, encipher only", k.ModeOfUse(), err)
	}
	block, err := ts.ExportTR31("zpk-e", "zmk-t", alice)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := pinblock.ParseKeyBlockHeader(block); err != nil || h.KeyUsage != "P0" || h.ModeOfUse != 'E' {
		t.Errorf("ExportTR31() header = %v (%v), want P0 mode E", h, err)
	}
	ts.now = ts.now.Add(time.Minute)
	if _, err := ts.Rotate(RotateRequest{ID: "zpk-e", Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	if got := modes(); got["zpk-e v2"] != 'E' {
		t.Errorf("after a generated rotation zpk-e v2 has mode %q, want E (a rotation never widens the mode)", got["zpk-e v2"])
	}
	raw, err := os.ReadFile(ts.cfg.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{`"action":"import-tr31"`, `"action":"export"`, `"action":"rotate"`} {
		found := false
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.Contains(line, action) && strings.Contains(line, `"key_id":"zpk-e"`) {
				found = true
				if !strings.Contains(line, `"mode_of_use":"E"`) {
					t.Errorf("custody record %s has no mode_of_use E: %s", action, line)
				}
			}
		}
		if !found {
			t.Errorf("no custody record %s for zpk-e", action)
		}
	}
	if _, err := VerifyCustodyLog(ts.cfg.LogPath); err != nil {
		t.Errorf("custody log: %v", err)
	}
}

// TestStoreRefusesKEKMode: a ZMK that arrived as K0 E (wrap only) does not
// unwrap an import; one that arrived as K0 D (unwrap only) does, but does
// not wrap an export. Neither refusal names key bytes.
func TestStoreRefusesKEKMode(t *testing.T) {
	ts := newTestStore(t, pinblock.AES)
	zmkT := tr31Hex(t, "DD7515F2BFC17F85CE48F3CA25CB21F6")
	if _, err := ts.CombineComponents(CombineRequest{ID: "zmk-t", Algorithm: pinblock.TDES, Components: components(t, pinblock.TDES, zmkT), Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	kbpk := tr31Key(t, pinblock.UsageZMK, pinblock.TDES, "DD7515F2BFC17F85CE48F3CA25CB21F6")
	const kekHex = "F039121BEC83D26B169BDCD5B22AAF8F" // the A.7.2.1 key, KCV CB9DEA
	kek := tr31Key(t, pinblock.UsageZMK, pinblock.TDES, kekHex)
	for _, m := range []byte{'E', 'D'} {
		h, err := pinblock.NewKeyBlockHeader(kek, kbpk)
		if err != nil {
			t.Fatal(err)
		}
		h.ModeOfUse = m
		block, err := pinblock.WrapKeyBlock(kbpk, h, kek)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ts.ImportTR31(TR31ImportRequest{ID: "kek-" + string(m), KBPK: "zmk-t", Block: block, Custodian: alice}); err != nil {
			t.Fatalf("ImportTR31(K0 %c) error = %v", m, err)
		}
	}
	if _, err := ts.ImportTR31(TR31ImportRequest{ID: "zpk-x", KBPK: "kek-E", Block: tr31A722Block, Custodian: alice}); !errors.Is(err, pinblock.ErrModeOfUse) ||
		!strings.Contains(err.Error(), "kek-E") || !strings.Contains(err.Error(), "E (encrypt only)") || strings.Contains(err.Error(), kekHex) {
		t.Errorf("ImportTR31(under a K0 E) error = %v, want ErrModeOfUse naming kek-E and mode E", err)
	}
	if _, err := ts.ExportTR31("zmk-t", "kek-D", alice); !errors.Is(err, pinblock.ErrModeOfUse) || !strings.Contains(err.Error(), "D (decrypt only)") {
		t.Errorf("ExportTR31(under a K0 D) error = %v, want ErrModeOfUse naming mode D", err)
	}
	if _, err := ts.ExportTR31("zmk-t", "kek-E", alice); err != nil {
		t.Errorf("ExportTR31(under a K0 E) error = %v, want a block", err)
	}
}

// TestStorePreModeRecordsReadAsUnrestricted: testdata/premode is a store
// written by pingate before it kept the mode of use (commit 39ca143): a ZMK
// combined from components and zpk-e imported from the A.7.2.2 block (P0
// E), which that pingate stored as B. It opens and loads, and its versions
// read as mode B — unrestricted, as they were used — and export as P0 B.
func TestStorePreModeRecordsReadAsUnrestricted(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"keys.json", "custody.log", "lmk"} {
		b, err := os.ReadFile(filepath.Join("testdata", "premode", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := OpenStore(StoreConfig{Path: filepath.Join(dir, "keys.json"), LogPath: filepath.Join(dir, "custody.log"), LMK: LMKRef{File: filepath.Join(dir, "lmk")}})
	if err != nil {
		t.Fatalf("OpenStore(a store written before modes were kept) error = %v", err)
	}
	defer s.Close()
	keys, err := s.List()
	if err != nil || len(keys) != 2 {
		t.Fatalf("List() = %v, %v; want 2 keys", keys, err)
	}
	for _, k := range keys {
		if k.ModeOfUse != pinblock.ModeBoth {
			t.Errorf("%s v%d reads as mode %v, want B", k.ID, k.Version, k.ModeOfUse)
		}
	}
	kr := pinblock.NewKeyring(time.Hour)
	defer kr.Zeroize()
	if n, err := s.Load(kr, time.Now()); err != nil || n != 2 {
		t.Fatalf("Load() = %d, %v", n, err)
	}
	block, err := s.ExportTR31("zpk-e", "zmk-1", alice)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := pinblock.ParseKeyBlockHeader(block); h.ModeOfUse != 'B' {
		t.Errorf("ExportTR31() mode %c, want B", h.ModeOfUse)
	}
}
