package keystore

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"pingate/pinblock"
)

// keyExchangeVectors are the key_exchange entries of
// pinblock/testdata/sm4-vectors.json (each names its source).
func keyExchangeVectors(t *testing.T) []struct {
	Name, Source, ZMK, KCV string
	KeyUnderZMK            string `json:"key_under_zmk"`
} {
	t.Helper()
	raw, err := os.ReadFile("../testdata/sm4-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		KeyExchange []struct {
			Name, Source, ZMK, KCV string
			KeyUnderZMK            string `json:"key_under_zmk"`
		} `json:"key_exchange"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.KeyExchange) == 0 {
		t.Fatal("sm4 key exchange vectors missing")
	}
	for _, c := range v.KeyExchange {
		if c.Source == "" {
			t.Fatalf("key exchange vector %s has no source", c.Name)
		}
	}
	return v.KeyExchange
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sm4Key(t testing.TB, id string, u pinblock.Usage, h string) pinblock.Key {
	t.Helper()
	k, err := pinblock.ParseHexKey(id, u, pinblock.SM4, 1, h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSM4StoreKeyExchangeVector: the published SM4 key exchange imports
// into the store under an SM4 ZMK combined from components.
func TestSM4StoreKeyExchangeVector(t *testing.T) {
	for _, v := range keyExchangeVectors(t) {

		ts := newTestStore(t, pinblock.AES)
		if _, err := ts.CombineComponents(CombineRequest{ID: "zmk-sm4", Algorithm: pinblock.SM4, Components: components(t, pinblock.SM4, unhex(t, v.ZMK)), Custodian: alice}); err != nil {
			t.Fatalf("%s: CombineComponents(SM4) error = %v", v.Name, err)
		}
		info, err := ts.ImportUnderZMK(pinblock.ImportRequest{ID: "zpk-sm4", Usage: pinblock.UsageZPK, Algorithm: pinblock.SM4, Enciphered: unhex(t, v.KeyUnderZMK), ZMK: pinblock.KeyRef{ID: "zmk-sm4"}, KCV: v.KCV, Who: "bob", Why: "sm4 key exchange"})
		if err != nil || info.KCV != strings.ToUpper(v.KCV) {
			t.Fatalf("%s: Store.ImportUnderZMK() = %+v, %v", v.Name, info, err)
		}

	}
}

// TestSM4StoreCustody: SM4 keys are generated, rotated, kept under the LMK
// (TR-31 algorithm '4') and logged like every other key; they do not go
// under a weaker LMK, and no key block is protected by an SM4 key.
func TestSM4StoreCustody(t *testing.T) {
	ts := newTestStore(t, pinblock.AES)
	info, err := ts.Generate(GenerateRequest{ID: "zpk-sm4", Usage: pinblock.UsageZPK, Algorithm: pinblock.SM4, Length: 16, Custodian: alice})
	if err != nil || info.Algorithm != pinblock.SM4 || len(info.KCV) != 16 {
		t.Fatalf("Generate(SM4) = %+v, %v", info, err)
	}
	if _, err := ts.Generate(GenerateRequest{ID: "zpk-sm4-32", Usage: pinblock.UsageZPK, Algorithm: pinblock.SM4, Length: 32, Custodian: alice}); !errors.Is(err, pinblock.ErrInvalidKey) {
		t.Errorf("Generate(SM4, 32 bytes) error = %v, want ErrInvalidKey", err)
	}
	if _, err := ts.Generate(GenerateRequest{ID: "tpk-sm4", Usage: pinblock.UsageTPK, Algorithm: pinblock.SM4, Length: 16, Custodian: alice}); err != nil {
		t.Fatal(err)
	}
	ts.now = ts.now.Add(time.Minute)
	rot, err := ts.Rotate(RotateRequest{ID: "zpk-sm4", Custodian: alice})
	if err != nil || rot.Version != 2 || rot.KCV == info.KCV {
		t.Fatalf("Rotate(SM4) = %+v, %v", rot, err)
	}
	ts.reopen(t)
	ring := pinblock.NewKeyring(ts.Grace())
	defer ring.Zeroize()
	if n, err := ts.Load(ring, ts.now); err != nil || n != 3 {
		t.Fatalf("Load() = %d, %v, want 3", n, err)
	}
	k, err := ring.Lookup(pinblock.KeyRef{ID: "zpk-sm4"}, ts.now)
	if err != nil || k.Algorithm() != pinblock.SM4 || k.KCV() != rot.KCV {
		t.Errorf("Lookup(zpk-sm4) = %v, %v", k, err)
	}
	if head, err := VerifyCustodyLog(ts.cfg.LogPath); err != nil || head.Seq != 3 {
		t.Errorf("VerifyCustodyLog() = %+v, %v, want 3 records", head, err)
	}

	weak := newTestStore(t, pinblock.TDES)
	if _, err := weak.Generate(GenerateRequest{ID: "zpk-sm4", Usage: pinblock.UsageZPK, Algorithm: pinblock.SM4, Length: 16, Custodian: alice}); !errors.Is(err, pinblock.ErrWeakKEK) {
		t.Errorf("Generate(SM4 under a TDES LMK) error = %v, want ErrWeakKEK", err)
	}

	zmk := sm4Key(t, "zmk", pinblock.UsageZMK, "1234567890ABCDEFABCDEF0987654321")
	if _, err := pinblock.NewKeyBlockHeader(k, zmk); !errors.Is(err, pinblock.ErrKeyBlock) {
		t.Errorf("NewKeyBlockHeader(under an SM4 KBPK) error = %v, want ErrKeyBlock", err)
	}
}
