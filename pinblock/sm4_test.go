package pinblock

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// sm4Vectors is testdata/sm4-vectors.json; every entry names its source.
type sm4Vectors struct {
	Cipher []struct {
		Name, Source, Key, Plaintext, Ciphertext string
		Iterations                               int
	} `json:"cipher"`
	KeyExchange []struct {
		Name, Source, ZMK, KCV string
		KeyUnderZMK            string `json:"key_under_zmk"`
	} `json:"key_exchange"`
	ClearBlocks []struct {
		Name, Source, Format, PIN, PAN string
		ClearBlock                     string `json:"clear_block"`
	} `json:"clear_blocks"`
}

// loadSM4Vectors is the one loader of testdata/sm4-vectors.json.
func loadSM4Vectors(t testing.TB) sm4Vectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/sm4-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v sm4Vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cipher) == 0 || len(v.KeyExchange) == 0 || len(v.ClearBlocks) == 0 {
		t.Fatal("sm4 vectors missing")
	}
	for _, c := range v.Cipher {
		if c.Source == "" {
			t.Fatalf("cipher vector %s has no source", c.Name)
		}
	}
	for _, c := range v.KeyExchange {
		if c.Source == "" {
			t.Fatalf("key exchange vector %s has no source", c.Name)
		}
	}
	for _, c := range v.ClearBlocks {
		if c.Source == "" {
			t.Fatalf("clear block vector %s has no source", c.Name)
		}
	}
	return v
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSM4CipherVectors: an SM4 Key enciphers the GB/T 32907-2016 Appendix A
// examples; the 1,000,000-iteration one is skipped in short mode.
func TestSM4CipherVectors(t *testing.T) {
	for _, v := range loadSM4Vectors(t).Cipher {
		t.Run(v.Name, func(t *testing.T) {
			if v.Iterations > 1 && testing.Short() {
				t.Skip("long iteration vector")
			}
			k, err := ParseHexKey("sm4", UsageZPK, SM4, 1, v.Key)
			if err != nil {
				t.Fatal(err)
			}
			b, err := k.blockCipher()
			if err != nil {
				t.Fatal(err)
			}
			x := unhex(t, v.Plaintext)
			for range v.Iterations {
				b.Encrypt(x, x)
			}
			if want := unhex(t, v.Ciphertext); !bytes.Equal(x, want) {
				t.Errorf("SM4 %s: ciphertext %X, want %X", v.Name, x, want)
			}
			for range v.Iterations {
				b.Decrypt(x, x)
			}
			if !bytes.Equal(x, unhex(t, v.Plaintext)) {
				t.Errorf("SM4 %s: decryption does not give the plaintext back", v.Name)
			}
		})
	}
}

// TestSM4KeyExchangeVector: the published working key, SM4-ECB under the
// published master key, imports under an SM4 ZMK with its published check
// value, through the SoftwareModule and through the Store.
func TestSM4KeyExchangeVector(t *testing.T) {
	for _, v := range loadSM4Vectors(t).KeyExchange {
		ring := NewKeyring(time.Hour)
		zmk, err := ParseHexKey("zmk-sm4", UsageZMK, SM4, 1, v.ZMK)
		if err != nil {
			t.Fatal(err)
		}
		if err := ring.Add(zmk); err != nil {
			t.Fatal(err)
		}
		m := NewSoftwareModule(ring, PINPolicy{}, nil)
		req := ImportRequest{ID: "zpk-sm4", Usage: UsageZPK, Algorithm: SM4, Enciphered: unhex(t, v.KeyUnderZMK), ZMK: KeyRef{ID: "zmk-sm4"}, KCV: v.KCV}
		info, err := m.Import(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: Import() error = %v", v.Name, err)
		}
		if info.KCV != strings.ToUpper(v.KCV) || info.Algorithm != SM4 || info.Length != 16 {
			t.Errorf("%s: Import() = %+v, want SM4 key with KCV %s", v.Name, info, v.KCV)
		}
		// The leading 4 bytes are accepted; a changed digit is not.
		req.ID, req.KCV = "zpk-sm4-short", v.KCV[:8]
		if _, err := m.Import(context.Background(), req); err != nil {
			t.Errorf("%s: Import(4-byte KCV) error = %v", v.Name, err)
		}
		bad := []byte(v.KCV)
		bad[15] ^= 1
		req.ID, req.KCV = "zpk-sm4-bad", string(bad)
		if _, err := m.Import(context.Background(), req); !errors.Is(err, ErrKCVMismatch) {
			t.Errorf("%s: Import(wrong KCV) error = %v, want ErrKCVMismatch", v.Name, err)
		}
		req.ID, req.KCV = "zpk-sm4-3", v.KCV[:6]
		if _, err := m.Import(context.Background(), req); !errors.Is(err, ErrKCVMismatch) {
			t.Errorf("%s: Import(3-byte KCV) error = %v, want ErrKCVMismatch (SM4 check values are at least 4 bytes)", v.Name, err)
		}

	}
}

// TestSM4ClearBlockVector: the published 128-bit format 0 block builds and
// parses.
func TestSM4ClearBlockVector(t *testing.T) {
	for _, v := range loadSM4Vectors(t).ClearBlocks {
		f, err := ParseFormat(v.Format)
		if err != nil {
			t.Fatal(err)
		}
		pin, err := NewSecretPIN(v.PIN)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeClear(f, pin, v.PAN)
		if err != nil {
			t.Fatalf("%s: EncodeClear() error = %v", v.Name, err)
		}
		if !bytes.Equal(got, unhex(t, v.ClearBlock)) {
			t.Errorf("%s: EncodeClear(%s) differs from the published block", v.Name, f)
		}
		back, err := DecodeClear(f, unhex(t, v.ClearBlock), v.PAN)
		if err != nil || subtle.ConstantTimeCompare([]byte(back.Reveal()), []byte(v.PIN)) != 1 {
			t.Errorf("%s: DecodeClear(%s) does not give the published PIN (err %v)", v.Name, f, err)
		}
	}
}

func TestSM4Formats(t *testing.T) {
	tests := []struct {
		give     string
		want     Format
		number   int
		size     int
		alg      Algorithm
		asString string
	}{
		{"SM4-0", Format0SM4, 0, 16, SM4, "SM4-0"},
		{"sm4-4", Format4SM4, 4, 16, SM4, "SM4-4"},
		{"4", Format4, 4, 16, AES, "ISO-4"},
		{"0", Format0, 0, 8, TDES, "ISO-0"},
	}
	for _, tt := range tests {
		f, err := ParseFormat(tt.give)
		if err != nil || f != tt.want {
			t.Fatalf("ParseFormat(%q) = %v, %v, want %v", tt.give, f, err, tt.want)
		}
		if f.Number() != tt.number || f.BlockSize() != tt.size || f.Algorithm() != tt.alg || f.String() != tt.asString {
			t.Errorf("%s: Number %d BlockSize %d Algorithm %s String %s", tt.give, f.Number(), f.BlockSize(), f.Algorithm(), f.String())
		}
		if got, err := FormatFor(tt.number, tt.alg); err != nil || got != tt.want {
			t.Errorf("FormatFor(%d, %s) = %v, %v, want %v", tt.number, tt.alg, got, err, tt.want)
		}
	}
	for _, bad := range []struct {
		n   int
		alg Algorithm
	}{{1, SM4}, {3, SM4}, {2, SM4}, {4, TDES}, {0, AES}, {5, ""}} {
		if _, err := FormatFor(bad.n, bad.alg); !errors.Is(err, ErrUnsupportedFormat) {
			t.Errorf("FormatFor(%d, %q) error = %v, want ErrUnsupportedFormat", bad.n, bad.alg, err)
		}
	}
}

func TestSM4TranslationAllowed(t *testing.T) {
	all := []Format{Format0, Format1, Format2, Format3, Format4, Format0SM4, Format4SM4}
	panBound := map[Format]bool{Format0: true, Format3: true, Format4: true, Format0SM4: true, Format4SM4: true}
	for _, from := range all {
		for _, to := range all {
			want := false
			switch {
			case panBound[from]:
				want = panBound[to]
			case from == Format1:
				want = to == Format1 || panBound[to]
			}
			if got := TranslationAllowed(from, to); got != want {
				t.Errorf("TranslationAllowed(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
}

func sm4Key(t testing.TB, id string, u Usage, h string) Key {
	t.Helper()
	k, err := ParseHexKey(id, u, SM4, 1, h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSM4EncipherRoundTrip: every PIN length, both SM4 formats; wrong keys
// and damaged blocks are refused without saying why.
func TestSM4EncipherRoundTrip(t *testing.T) {
	k := sm4Key(t, "z", UsageZPK, "0123456789ABCDEFFEDCBA9876543210")
	other := sm4Key(t, "o", UsageZPK, "FEDCBA98765432100123456789ABCDEF")
	aesKey, err := ParseHexKey("a", UsageZPK, AES, 1, "000102030405060708090A0B0C0D0E0F")
	if err != nil {
		t.Fatal(err)
	}
	const pan = "6230606601007726888"
	for _, f := range []Format{Format0SM4, Format4SM4} {
		for n := MinPINLength; n <= MaxPINLength; n++ {
			digits := "987654321098"[:n]
			pin, _ := NewSecretPIN(digits)
			block, err := Encipher(f, pin, pan, k)
			if err != nil || len(block) != 16 {
				t.Fatalf("Encipher(%s, %d digits) = %d bytes, %v", f, n, len(block), err)
			}
			got, err := Decipher(f, block, pan, k)
			if err != nil || got.Reveal() != digits {
				t.Errorf("Decipher(%s, %d digits) does not round-trip (err %v)", f, n, err)
			}
			if _, err := Decipher(f, block, "6230606601007726878", k); !errors.Is(err, ErrInvalidPINBlock) {
				t.Errorf("Decipher(%s) under another PAN error = %v, want ErrInvalidPINBlock", f, err)
			}
			if _, err := Decipher(f, block, pan, other); !errors.Is(err, ErrInvalidPINBlock) {
				t.Errorf("Decipher(%s) under another key error = %v, want ErrInvalidPINBlock", f, err)
			}
		}
		pin, _ := NewSecretPIN("1234")
		if _, err := Encipher(f, pin, pan, aesKey); !errors.Is(err, ErrKeyAlgorithmMismatch) {
			t.Errorf("Encipher(%s, AES key) error = %v, want ErrKeyAlgorithmMismatch", f, err)
		}
		if _, err := Decipher(f, make([]byte, 8), pan, k); !errors.Is(err, ErrInvalidPINBlock) {
			t.Errorf("Decipher(%s, 8 bytes) error = %v, want ErrInvalidPINBlock", f, err)
		}
	}
	pin, _ := NewSecretPIN("1234")
	if _, err := Encipher(Format4, pin, pan, k); !errors.Is(err, ErrKeyAlgorithmMismatch) {
		t.Errorf("Encipher(ISO-4, SM4 key) error = %v, want ErrKeyAlgorithmMismatch", err)
	}
}

// TestSM4ClearBlockChecks: a Format0SM4 block with any fill nibble not F is
// refused, as format 0 is.
func TestSM4ClearBlockChecks(t *testing.T) {
	const pan = "6230606601007726888"
	pin, _ := NewSecretPIN("123654")
	good, err := EncodeClear(Format0SM4, pin, pan)
	if err != nil {
		t.Fatal(err)
	}
	for i := 4; i < 16; i++ { // every byte after the PIN digits
		b := bytes.Clone(good)
		b[i] ^= 0x01
		if _, err := DecodeClear(Format0SM4, b, pan); !errors.Is(err, ErrInvalidPINBlock) {
			t.Errorf("DecodeClear(SM4-0) with byte %d changed: error = %v, want ErrInvalidPINBlock", i, err)
		}
	}
	b := bytes.Clone(good)
	b[0] = 0x16 // control nibble 1
	if _, err := DecodeClear(Format0SM4, b, pan); !errors.Is(err, ErrInvalidPINBlock) {
		t.Errorf("DecodeClear(SM4-0, control 1) error = %v, want ErrInvalidPINBlock", err)
	}
}

// TestSM4Translate: a PIN goes SM4-4 → AES ISO-4 → SM4-0 → TDES ISO-0 →
// SM4-4 and comes out the same; refused pairs are refused.
func TestSM4Translate(t *testing.T) {
	sm4a := sm4Key(t, "s1", UsageZPK, "0123456789ABCDEFFEDCBA9876543210")
	sm4b := sm4Key(t, "s2", UsageZPK, "F351D490994603795C6EBEE8FAEBB481")
	aesKey, _ := ParseHexKey("a", UsageZPK, AES, 1, "000102030405060708090A0B0C0D0E0F")
	tdes, _ := ParseHexKey("t", UsageZPK, TDES, 1, "0123456789ABCDEFFEDCBA9876543210")
	const pan = "4000001234567899"
	pin, _ := NewSecretPIN("20251")
	block, err := Encipher(Format4SM4, pin, pan, sm4a)
	if err != nil {
		t.Fatal(err)
	}
	hops := []struct {
		key Key
		f   Format
	}{{aesKey, Format4}, {sm4b, Format0SM4}, {tdes, Format0}, {sm4b, Format4SM4}, {sm4a, Format4SM4}}
	fromKey, fromFormat := sm4a, Format4SM4
	for _, h := range hops {
		out, err := TranslateBlock(block, pan, fromKey, fromFormat, h.key, h.f)
		if err != nil {
			t.Fatalf("TranslateBlock(%s → %s) error = %v", fromFormat, h.f, err)
		}
		if len(out) != h.f.BlockSize() {
			t.Fatalf("TranslateBlock(%s → %s) = %d bytes, want %d", fromFormat, h.f, len(out), h.f.BlockSize())
		}
		block, fromKey, fromFormat = out, h.key, h.f
	}
	got, err := Decipher(fromFormat, block, pan, fromKey)
	if err != nil || got.Reveal() != "20251" {
		t.Errorf("after the translations the PIN differs (err %v)", err)
	}
	if _, err := TranslateBlock(block, pan, sm4a, Format4SM4, tdes, Format1); !errors.Is(err, ErrForbiddenTranslation) {
		t.Errorf("TranslateBlock(SM4-4 → ISO-1) error = %v, want ErrForbiddenTranslation", err)
	}
	if _, err := TranslateBlock(block, pan, sm4a, Format4SM4, aesKey, Format4SM4); !errors.Is(err, ErrKeyAlgorithmMismatch) {
		t.Errorf("TranslateBlock(to SM4-4 under AES) error = %v, want ErrKeyAlgorithmMismatch", err)
	}
}

// TestSM4PreparedRoute: the SoftwareModule translates SM4 routes, and a
// Route says when it needs SM4.
func TestSM4PreparedRoute(t *testing.T) {
	ring := NewKeyring(time.Hour)
	for _, k := range []Key{
		sm4Key(t, "acq", UsageZPK, "0123456789ABCDEFFEDCBA9876543210"),
		sm4Key(t, "iss", UsageZPK, "F351D490994603795C6EBEE8FAEBB481"),
	} {
		if err := ring.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	m := NewSoftwareModule(ring, PINPolicy{}, nil)
	r := Route{From: KeyRef{ID: "acq"}, FromFormat: Format0SM4, To: KeyRef{ID: "iss"}, ToFormat: Format4SM4}
	if !r.UsesSM4() || (Route{FromFormat: Format0, ToFormat: Format4}).UsesSM4() {
		t.Error("Route.UsesSM4() wrong")
	}
	tr, err := m.Prepare(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	acq, _ := ring.Lookup(KeyRef{ID: "acq"}, time.Now())
	iss, _ := ring.Lookup(KeyRef{ID: "iss"}, time.Now())
	const pan = "6230606601007726888"
	oldPIN, _ := NewSecretPIN("1357")
	newPIN, _ := NewSecretPIN("864209")
	oldB, _ := Encipher(Format0SM4, oldPIN, pan, acq)
	newB, _ := Encipher(Format0SM4, newPIN, pan, acq)
	buf := make([]byte, BufferSize)
	o, n, err := tr.TranslatePair(context.Background(), buf, PairBlocks{PAN: pan, Old: oldB, New: newB, CheckNewPIN: true})
	if err != nil {
		t.Fatal(err)
	}
	gotOld, err1 := Decipher(Format4SM4, o, pan, iss)
	gotNew, err2 := Decipher(Format4SM4, n, pan, iss)
	if err1 != nil || err2 != nil || gotOld.Reveal() != "1357" || gotNew.Reveal() != "864209" {
		t.Errorf("TranslatePair(SM4-0 → SM4-4) does not give the PINs back (%v, %v)", err1, err2)
	}
	if _, err := m.Prepare(context.Background(), Route{From: KeyRef{ID: "acq"}, FromFormat: Format0, To: KeyRef{ID: "iss"}, ToFormat: Format4SM4}); !errors.Is(err, ErrKeyAlgorithmMismatch) {
		t.Errorf("Prepare(ISO-0 under an SM4 key) error = %v, want ErrKeyAlgorithmMismatch", err)
	}
}

// TestSM4Components: an SM4 ZMK combines from components checked against
// their own 8-byte check values.
func TestSM4Components(t *testing.T) {
	target := unhex(t, "1234567890ABCDEFABCDEF0987654321")
	comps := components(t, SM4, target)
	if len(comps[0].KCV()) != 16 {
		t.Fatalf("SM4 component KCV has %d digits, want 16", len(comps[0].KCV()))
	}
	k, err := CombineComponents("zmk", UsageZMK, SM4, 1, comps)
	if err != nil {
		t.Fatal(err)
	}
	if want := sm4Key(t, "x", UsageZMK, "1234567890ABCDEFABCDEF0987654321").KCV(); k.KCV() != want {
		t.Errorf("CombineComponents(SM4) KCV = %s, want %s", k.KCV(), want)
	}
}
