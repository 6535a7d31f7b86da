package keystore

import (
	"bytes"
	"crypto/des"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"pingate/pinblock"
	"slices"
	"strings"
	"testing"
	"time"
)

// RFC 3394 section 4.1: 128-bit key data wrapped with a 128-bit KEK.
const (
	rfc3394KEK     = "000102030405060708090A0B0C0D0E0F"
	rfc3394Key     = "00112233445566778899AABBCCDDEEFF"
	rfc3394Wrapped = "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
)

type testStore struct {
	*Store
	dir string
	cfg StoreConfig
	now time.Time
}

func newTestStore(t *testing.T, alg pinblock.Algorithm) *testStore {
	t.Helper()
	dir := t.TempDir()
	lmkPath := filepath.Join(dir, "lmk")
	if _, err := WriteLMKFile(lmkPath, alg); err != nil {
		t.Fatal(err)
	}
	cfg := StoreConfig{Path: filepath.Join(dir, "keys.json"), LogPath: filepath.Join(dir, "custody.log"), LMK: LMKRef{File: lmkPath}, Grace: time.Hour}
	ts := &testStore{dir: dir, cfg: cfg, now: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}
	s, err := InitStore(cfg)
	if err != nil {
		t.Fatalf("InitStore() error = %v", err)
	}
	s.Close()
	ts.reopen(t)
	return ts
}

func (ts *testStore) reopen(t *testing.T) {
	t.Helper()
	s, err := OpenStore(ts.cfg)
	if err != nil {
		t.Fatalf("OpenStore() error = %v", err)
	}
	s.now = func() time.Time { return ts.now }
	ts.Store = s
	t.Cleanup(func() { s.Close() })
}

var alice = Custodian{Who: "alice", Why: "test ceremony"}

// components splits the published key target into two components whose
// KCVs are computed through NewKey.
func components(t *testing.T, alg pinblock.Algorithm, target []byte) []pinblock.Component {
	t.Helper()
	c1 := make([]byte, len(target))
	for i := range c1 {
		c1[i] = byte(i*37 + 11)
	}
	c2 := xorAll(target, c1)
	kcv := func(b []byte) string {
		k, err := pinblock.NewKey("c", pinblock.UsageZMK, alg, 1, b)
		if err != nil {
			t.Fatal(err)
		}
		return k.KCV()
	}
	return []pinblock.Component{mustComponent(t, c1, kcv(c1)), mustComponent(t, c2, kcv(c2))}
}

func TestStoreCeremonies(t *testing.T) {
	ts := newTestStore(t, pinblock.AES)

	// A TDES ZMK from components: the TR-31:2018 A.7.2.2 KBPK.
	zmkT := tr31Hex(t, "DD7515F2BFC17F85CE48F3CA25CB21F6")
	info, err := ts.CombineComponents(CombineRequest{ID: "zmk-t", Algorithm: pinblock.TDES, Components: components(t, pinblock.TDES, zmkT), Custodian: alice})
	if err != nil {
		t.Fatalf("CombineComponents() error = %v", err)
	}
	if info.Usage != pinblock.UsageZMK || info.Version != 1 || info.KCV != kcvOf(t, zmkT) {
		t.Errorf("CombineComponents() = %+v", info)
	}

	// A TR-31 block under it: the published A.7.2.2 block.
	info, err = ts.ImportTR31(TR31ImportRequest{ID: "zpk-acq", KBPK: "zmk-t", Block: "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E", Custodian: alice})
	if err != nil {
		t.Fatalf("ImportTR31() error = %v", err)
	}
	if info.Usage != pinblock.UsageZPK || !strings.HasPrefix(info.KCV, "57C409") {
		t.Errorf("ImportTR31() = %+v, want ZPK with the published KCV 57C409", info)
	}

	// An AES ZMK from components (the RFC 3394 KEK), then the RFC 3394 key
	// imported under it with AES Key Wrap.
	if _, err := ts.CombineComponents(CombineRequest{ID: "zmk-a", Algorithm: pinblock.AES, Components: components(t, pinblock.AES, tr31Hex(t, rfc3394KEK)), Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	wantKCV := tr31Key(t, pinblock.UsageZPK, pinblock.AES, rfc3394Key).KCV()
	info, err = ts.ImportUnderZMK(pinblock.ImportRequest{ID: "zpk-iss", Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Enciphered: tr31Hex(t, rfc3394Wrapped), ZMK: pinblock.KeyRef{ID: "zmk-a"}, KCV: wantKCV, Who: "bob", Why: "issuer key exchange"})
	if err != nil {
		t.Fatalf("ImportUnderZMK(AES KW) error = %v", err)
	}
	if info.KCV != wantKCV {
		t.Errorf("ImportUnderZMK() KCV = %s, want %s", info.KCV, wantKCV)
	}

	// A TDES key under the TDES ZMK with ECB, enciphered here with crypto/des.
	tpk := tr31Hex(t, "F039121BEC83D26B169BDCD5B22AAF8F") // TR-31:2018 A.7.2.1 key, KCV CB9DEA
	c, _ := des.NewTripleDESCipher(append(bytes.Clone(zmkT), zmkT[:8]...))
	enc := make([]byte, 16)
	c.Encrypt(enc[:8], tpk[:8])
	c.Encrypt(enc[8:], tpk[8:])
	if _, err := ts.ImportUnderZMK(pinblock.ImportRequest{ID: "tpk-1", Usage: pinblock.UsageTPK, Algorithm: pinblock.TDES, Enciphered: enc, ZMK: pinblock.KeyRef{ID: "zmk-t"}, KCV: "CB9DEA", Who: "bob", Why: "terminal key"}); err != nil {
		t.Fatalf("ImportUnderZMK(TDES ECB) error = %v", err)
	}
	if _, err := ts.ImportUnderZMK(pinblock.ImportRequest{ID: "tpk-2", Usage: pinblock.UsageTPK, Algorithm: pinblock.TDES, Enciphered: enc, ZMK: pinblock.KeyRef{ID: "zmk-t"}, KCV: "CB9DEB", Who: "bob", Why: "terminal key"}); !errors.Is(err, pinblock.ErrKCVMismatch) {
		t.Errorf("ImportUnderZMK(wrong KCV) error = %v, want ErrKCVMismatch", err)
	}

	// Generate and rotate a PVK.
	if _, err := ts.Generate(GenerateRequest{ID: "pvk-1", Usage: pinblock.UsagePVK, Algorithm: pinblock.TDES, Length: 16, Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	rotatedAt := ts.now.Add(10 * time.Minute)
	ts.now = rotatedAt
	info, err = ts.Rotate(RotateRequest{ID: "pvk-1", Custodian: alice})
	if err != nil || info.Version != 2 {
		t.Fatalf("Rotate() = %+v, %v, want version 2", info, err)
	}

	list, err := ts.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range list {
		s := k.ID + " v" + itoaVersion(k.Version)
		if k.RetiredAt != nil {
			s += " retired"
		}
		got = append(got, s)
	}
	want := []string{"pvk-1 v1 retired", "pvk-1 v2", "tpk-1 v1", "zmk-a v1", "zmk-t v1", "zpk-acq v1", "zpk-iss v1"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("List() = %v, want %v", got, want)
	}

	// Load: within the grace window both PVK versions, after it only v2.
	ring := pinblock.NewKeyring(ts.Grace())
	n, err := ts.Load(ring, rotatedAt.Add(time.Minute))
	if err != nil || n != 7 {
		t.Fatalf("Load() = %d, %v, want 7", n, err)
	}
	k, err := ring.Lookup(pinblock.KeyRef{ID: "zpk-acq"}, rotatedAt)
	if err != nil || !strings.HasPrefix(k.KCV(), "57C409") {
		t.Errorf("Lookup(zpk-acq) = %v, %v", k, err)
	}
	if _, err := ring.Lookup(pinblock.KeyRef{ID: "pvk-1", Version: 1}, rotatedAt.Add(time.Minute)); err != nil {
		t.Errorf("Lookup(pvk-1 v1) in grace error = %v", err)
	}
	ring.Zeroize()
	ring = pinblock.NewKeyring(ts.Grace())
	if n, err := ts.Load(ring, rotatedAt.Add(ts.Grace())); err != nil || n != 6 {
		t.Errorf("Load(after grace) = %d, %v, want 6", n, err)
	}
	ring.Zeroize()

	// Export the ZPK under the AES ZMK and read it back independently.
	block, err := ts.ExportTR31("zpk-acq", "zmk-a", alice)
	if err != nil {
		t.Fatalf("ExportTR31() error = %v", err)
	}
	back, _, err := pinblock.UnwrapKeyBlock(tr31Key(t, pinblock.UsageZMK, pinblock.AES, rfc3394KEK), block, pinblock.UnwrapOptions{ID: "x", Version: 1})
	if err != nil || !strings.HasPrefix(back.KCV(), "57C409") {
		t.Errorf("exported block unwraps to %v, %v, want KCV 57C409", back, err)
	}

	if err := ts.Remove("tpk-1", alice); err != nil {
		t.Fatal(err)
	}
	if err := ts.Remove("tpk-1", alice); !errors.Is(err, pinblock.ErrUnknownKey) {
		t.Errorf("Remove(twice) error = %v, want ErrUnknownKey", err)
	}

	// The custody log verifies and holds one record per change.
	head, err := VerifyCustodyLog(ts.cfg.LogPath)
	if err != nil || head.Seq != 9 {
		t.Errorf("VerifyCustodyLog() = %+v, %v, want 9 records", head, err)
	}
	// Neither file holds key bytes.
	for _, p := range []string{ts.cfg.Path, ts.cfg.LogPath} {
		raw, _ := os.ReadFile(p)
		for _, secret := range []string{"DD7515F2BFC17F85", "3F419E1CB7079442", "F039121BEC83D26B", "00112233445566778899", "000102030405060708"} {
			if bytes.Contains(bytes.ToUpper(raw), []byte(secret)) {
				t.Errorf("%s holds clear key bytes", filepath.Base(p))
			}
		}
	}
	// A new Store on the same files sees the same keys.
	ts.reopen(t)
	if l, err := ts.List(); err != nil || len(l) != 6 {
		t.Errorf("List() after reopen = %d keys, %v, want 6", len(l), err)
	}
}

func itoaVersion(v int) string { return tr31Itoa(v) }

func TestStoreRefuses(t *testing.T) {
	ts := newTestStore(t, pinblock.TDES)
	if _, err := ts.Generate(GenerateRequest{ID: "aes-zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Length: 32, Custodian: alice}); !errors.Is(err, pinblock.ErrWeakKEK) {
		t.Errorf("Generate(AES-256 under TDES LMK) error = %v, want ErrWeakKEK", err)
	}
	if _, err := ts.Generate(GenerateRequest{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Custodian: Custodian{Who: "alice"}}); err == nil {
		t.Error("Generate(no why) error = nil")
	}
	if _, err := ts.Generate(GenerateRequest{ID: "bad id", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Custodian: alice}); !errors.Is(err, pinblock.ErrInvalidKey) {
		t.Errorf("Generate(bad id) error = %v, want ErrInvalidKey", err)
	}
	if _, err := ts.Generate(GenerateRequest{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Generate(GenerateRequest{ID: "zpk", Usage: pinblock.UsageZPK, Algorithm: pinblock.TDES, Length: 16, Custodian: alice}); !errors.Is(err, pinblock.ErrKeyExists) {
		t.Errorf("Generate(existing id) error = %v, want ErrKeyExists", err)
	}
	if _, err := ts.Rotate(RotateRequest{ID: "nope", Custodian: alice}); !errors.Is(err, pinblock.ErrUnknownKey) {
		t.Errorf("Rotate(unknown) error = %v, want ErrUnknownKey", err)
	}
	if _, err := ts.ImportTR31(TR31ImportRequest{ID: "x", KBPK: "zpk", Block: "B0016P0TE00E0000", Custodian: alice}); !errors.Is(err, pinblock.ErrKeyUsage) {
		t.Errorf("ImportTR31(under a ZPK) error = %v, want ErrKeyUsage", err)
	}
	// An AES-256 key cannot come in under a double-length TDES ZMK.
	if _, err := ts.CombineComponents(CombineRequest{ID: "zmk", Algorithm: pinblock.TDES, Components: components(t, pinblock.TDES, tr31Hex(t, "DD7515F2BFC17F85CE48F3CA25CB21F6")), Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ExportTR31("zpk", "zmk", alice); err != nil {
		t.Errorf("ExportTR31() error = %v", err)
	}
	// A key that arrived marked non-exportable ('N': payShield 10k block
	// from openemv/tr31, see tr31-vectors.json) stays in.
	if _, err := ts.CombineComponents(CombineRequest{ID: "zmk-ps", Algorithm: pinblock.TDES, Components: components(t, pinblock.TDES, tr31Hex(t, "EFE0853B256B583D868F251CE99EA1D9")), Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	info, err := ts.ImportTR31(TR31ImportRequest{ID: "zmk-n", KBPK: "zmk-ps", Block: "B0080K0TN00N00001C414014375212C24995E405B5EE052CB92B67F455EA2680F6751088F9F1C228", Custodian: alice})
	if err != nil || info.KCV != "5C9405" || info.Usage != pinblock.UsageZMK {
		t.Fatalf("ImportTR31(payShield K0) = %+v, %v, want ZMK 5C9405", info, err)
	}
	if _, err := ts.ExportTR31("zmk-n", "zmk", alice); !errors.Is(err, pinblock.ErrKeyUsage) {
		t.Errorf("ExportTR31(non-exportable) error = %v, want ErrKeyUsage", err)
	}
	if _, err := ts.Rotate(RotateRequest{ID: "zmk-n", Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ExportTR31("zmk-n", "zmk", alice); !errors.Is(err, pinblock.ErrKeyUsage) {
		t.Errorf("ExportTR31(rotated non-exportable) error = %v, want ErrKeyUsage", err)
	}
	head, err := VerifyCustodyLog(ts.cfg.LogPath)
	if err != nil || head.Seq != 6 {
		t.Errorf("custody log = %+v, %v, want 6 records (refused changes leave none)", head, err)
	}
}

func TestStoreDetectsTampering(t *testing.T) {
	setup := func(t *testing.T) *testStore {
		ts := newTestStore(t, pinblock.AES)
		for _, id := range []string{"zpk-a", "zpk-b"} {
			if _, err := ts.Generate(GenerateRequest{ID: id, Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Length: 16, Custodian: alice}); err != nil {
				t.Fatal(err)
			}
		}
		return ts
	}
	t.Run("edited file", func(t *testing.T) {
		ts := setup(t)
		raw, _ := os.ReadFile(ts.cfg.Path)
		raw = bytes.Replace(raw, []byte(`"usage": "ZPK"`), []byte(`"usage": "TPK"`), 1)
		os.WriteFile(ts.cfg.Path, raw, 0o600)
		if _, err := OpenStore(ts.cfg); !errors.Is(err, ErrStore) {
			t.Errorf("OpenStore(edited) error = %v, want ErrStore", err)
		}
	})
	t.Run("blocks swapped between entries", func(t *testing.T) {
		ts := setup(t)
		f, err := ts.read()
		if err != nil {
			t.Fatal(err)
		}
		f.Keys[0].KeyUnderLMK, f.Keys[1].KeyUnderLMK = f.Keys[1].KeyUnderLMK, f.Keys[0].KeyUnderLMK
		if err := ts.write(f); err != nil { // re-MACed: only the binding can tell
			t.Fatal(err)
		}
		if _, err := ts.Load(pinblock.NewKeyring(time.Hour), ts.now); !errors.Is(err, ErrStore) {
			t.Errorf("Load(swapped blocks) error = %v, want ErrStore", err)
		}
	})
	t.Run("other LMK", func(t *testing.T) {
		ts := setup(t)
		other := filepath.Join(ts.dir, "lmk2")
		if _, err := WriteLMKFile(other, pinblock.AES); err != nil {
			t.Fatal(err)
		}
		cfg := ts.cfg
		cfg.LMK = LMKRef{File: other}
		if _, err := OpenStore(cfg); !errors.Is(err, ErrStore) {
			t.Errorf("OpenStore(other LMK) error = %v, want ErrStore", err)
		}
	})
	t.Run("log tail removed", func(t *testing.T) {
		ts := setup(t)
		// Both records go: the store holds only the last change's (seq 2).
		writeLines(t, ts.cfg.LogPath, nil)
		if _, err := OpenStore(ts.cfg); !errors.Is(err, ErrCustodyLog) {
			t.Errorf("OpenStore(log tail removed) error = %v, want ErrCustodyLog", err)
		}
	})
	t.Run("last change's records removed", func(t *testing.T) {
		// The store holds them (custody_tail, under its MAC): they are
		// reported pending and put back by the next change, with a record.
		ts := setup(t)
		lines := readLines(t, ts.cfg.LogPath)
		writeLines(t, ts.cfg.LogPath, lines[:1])
		ts.reopen(t)
		if st, err := ts.CheckLog(); err != nil || st.Pending != 1 || st.Records != 1 {
			t.Fatalf("CheckLog() = %+v, %v; want 1 record and 1 pending", st, err)
		}
		if _, err := ts.Generate(GenerateRequest{ID: "zpk-c", Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Length: 16, Custodian: alice}); err != nil {
			t.Fatal(err)
		}
		lines = readLines(t, ts.cfg.LogPath)
		if head, err := VerifyCustodyLog(ts.cfg.LogPath); err != nil || head.Seq != 4 ||
			!strings.Contains(lines[1], `"key_id":"zpk-b"`) || !strings.Contains(lines[2], `"action":"repair"`) || !strings.Contains(lines[3], `"key_id":"zpk-c"`) {
			t.Errorf("log after the next change = %q (%v), want zpk-a, zpk-b, repair, zpk-c", lines, err)
		}
	})
	t.Run("log deleted", func(t *testing.T) {
		ts := setup(t)
		os.Remove(ts.cfg.LogPath)
		if _, err := OpenStore(ts.cfg); err == nil {
			t.Error("OpenStore(log deleted) error = nil")
		}
	})
}

func TestLMKRef(t *testing.T) {
	const value = "aes:000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	t.Setenv("PINGATE_TEST_LMK", value)
	r := LMKRef{Env: "PINGATE_TEST_LMK"}
	if s := r.String(); strings.Contains(s, "0001020304") || !strings.Contains(s, "PINGATE_TEST_LMK") {
		t.Errorf("String() = %q, want the variable name and no value", s)
	}
	if b, _ := json.Marshal(r); bytes.Contains(b, []byte("0001020304")) {
		t.Errorf("json.Marshal(LMKRef) = %s shows the value", b)
	}
	k, err := r.Load()
	if err != nil || k.Algorithm() != pinblock.AES || k.Len() != 32 || k.Usage() != pinblock.UsageLMK {
		t.Fatalf("Load() = %v, %v", k, err)
	}
	tests := []struct {
		name string
		give LMKRef
		env  string
	}{
		{"both", LMKRef{File: "/x", Env: "Y"}, ""},
		{"neither", LMKRef{}, ""},
		{"unset env", LMKRef{Env: "PINGATE_TEST_LMK_UNSET"}, ""},
		{"not hex", LMKRef{Env: "PINGATE_TEST_LMK2"}, "aes:000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1EZZ"},
		{"ambiguous length", LMKRef{Env: "PINGATE_TEST_LMK2"}, "000102030405060708090A0B0C0D0E0F1011"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("PINGATE_TEST_LMK2", tt.env)
			}
			_, err := tt.give.Load()
			if !errors.Is(err, pinblock.ErrInvalidKey) {
				t.Fatalf("Load() error = %v, want ErrInvalidKey", err)
			}
			if tt.env != "" && strings.Contains(err.Error(), tt.env[8:20]) {
				t.Errorf("Load() error %q echoes the value", err)
			}
		})
	}
	// Bare hex: 48 digits is TDES.
	t.Setenv("PINGATE_TEST_LMK3", "0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")
	if k, err := (LMKRef{Env: "PINGATE_TEST_LMK3"}).Load(); err != nil || k.Algorithm() != pinblock.TDES {
		t.Errorf("Load(48 hex digits) = %v, %v, want TDES", k, err)
	}
	// A world-readable file is refused.
	p := filepath.Join(t.TempDir(), "lmk")
	os.WriteFile(p, []byte(value), 0o644)
	if _, err := (LMKRef{File: p}).Load(); !errors.Is(err, pinblock.ErrInvalidKey) {
		t.Errorf("Load(mode 0644) error = %v, want ErrInvalidKey", err)
	}
	// WriteLMKFile refuses to overwrite and writes mode 0600.
	if _, err := WriteLMKFile(p, pinblock.AES); err == nil {
		t.Error("WriteLMKFile(existing) error = nil")
	}
	p2 := filepath.Join(t.TempDir(), "lmk")
	kcv, err := WriteLMKFile(p2, pinblock.AES)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p2)
	k2, err := LMKRef{File: p2}.Load()
	if err != nil || st.Mode().Perm() != 0o600 || k2.KCV() != kcv {
		t.Errorf("WriteLMKFile: mode %v, Load = %v, %v, want 0600 and KCV %s", st.Mode().Perm(), k2, err, kcv)
	}
}

func TestStoreConfigValidate(t *testing.T) {
	err := StoreConfig{Path: "a", LogPath: "a", Grace: -time.Second}.Validate()
	for _, want := range []string{"same file", "negative", "LMK reference"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if err := (StoreConfig{Path: "a", LogPath: "b", LMK: LMKRef{Env: "X"}}).Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

// TestStoreConcurrentWriters: two Stores on the same files (as two CLI
// processes would be) and several goroutines each; the lock serialises them
// and no change is lost.
func TestStoreConcurrentWriters(t *testing.T) {
	ts := newTestStore(t, pinblock.AES)
	other, err := OpenStore(ts.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		s := ts.Store
		if i%2 == 1 {
			s = other
		}
		go func(i int, s *Store) {
			_, err := s.Generate(GenerateRequest{ID: "k" + tr31Itoa(i+1), Usage: pinblock.UsageTAK, Algorithm: pinblock.AES, Length: 16, Custodian: alice})
			errs <- err
		}(i, s)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Errorf("Generate() error = %v", err)
		}
	}
	if l, err := ts.List(); err != nil || len(l) != n {
		t.Errorf("List() = %d keys, %v, want %d", len(l), err, n)
	}
	if head, err := VerifyCustodyLogHead(ts.cfg.LogPath, CustodyHead{}); err != nil || head.Seq != n {
		t.Errorf("custody log = %+v, %v, want %d records", head, err, n)
	}
}

// TestStoreCommitLogAppendFails: when the custody append fails after the
// store file was written (a failing writer stands in for a full disk), the
// change stands, the error says its records wait in the store
// (ErrCustodyPending), the log is untouched, and the next change appends
// them and records the repair.
func TestStoreCommitLogAppendFails(t *testing.T) {
	ts := newTestStore(t, pinblock.AES)
	if _, err := ts.Generate(GenerateRequest{ID: "zpk-a", Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Length: 16, Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	before := readLines(t, ts.cfg.LogPath)
	unlock, err := ts.lock()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ts.begin()
	if err != nil {
		t.Fatal(err)
	}
	// A handle that refuses every write: the append fails after the store write.
	ch.log.f.Close()
	if ch.log.f, err = os.Open(ts.cfg.LogPath); err != nil {
		t.Fatal(err)
	}
	ch.f.Keys = slices.DeleteFunc(ch.f.Keys, func(e storeEntry) bool { return e.ID == "zpk-a" })
	_, err = ts.commit(ch, CustodyRecord{Who: "alice", Why: "test", Action: ActionRemove, KeyID: "zpk-a", Under: "lmk"})
	ch.log.Close()
	unlock()
	if !errors.Is(err, ErrCustodyPending) {
		t.Fatalf("commit with a failing log writer error = %v, want ErrCustodyPending", err)
	}
	if got := readLines(t, ts.cfg.LogPath); strings.Join(got, "") != strings.Join(before, "") {
		t.Errorf("log changed by a failed append: %q", got)
	}
	if keys, err := ts.List(); err != nil || len(keys) != 0 {
		t.Errorf("List() = %v, %v; want the removal to stand", keys, err)
	}
	if st, err := ts.CheckLog(); err != nil || st.Records != 1 || st.Pending != 1 {
		t.Errorf("CheckLog() = %+v, %v; want 1 record and 1 pending", st, err)
	}
	if _, err := ts.Generate(GenerateRequest{ID: "zpk-b", Usage: pinblock.UsageZPK, Algorithm: pinblock.AES, Length: 16, Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, ts.cfg.LogPath)
	if len(lines) != 5 || !strings.Contains(lines[1], `"action":"remove"`) || !strings.Contains(lines[2], `"action":"repair"`) || !strings.Contains(lines[3], `"key_id":"zpk-b"`) {
		t.Errorf("log after the next change = %q, want generate, remove, repair, generate", lines)
	}
	if st, err := ts.CheckLog(); err != nil || st.Records != 4 || st.Pending != 0 {
		t.Errorf("CheckLog() = %+v, %v; want 4 records, none pending", st, err)
	}
}
