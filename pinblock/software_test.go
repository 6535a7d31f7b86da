package pinblock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"testing"
	"time"
)

// moduleFixture is a software module over a ring holding an acquirer ZPK
// (TDES), an issuer ZPK (AES), a TDES ZMK and a TAK.
type moduleFixture struct {
	m    *SoftwareModule
	ring *Keyring
	acq  Key // TDES ZPK "acq"
	iss  Key // AES ZPK "iss"
	now  time.Time
}

func newFixture(t *testing.T) *moduleFixture {
	t.Helper()
	f := &moduleFixture{ring: NewKeyring(5 * time.Minute), now: t0}
	f.acq = testKey(t, "acq", UsageZPK, TDES, 1, 16)
	f.iss = testKey(t, "iss", UsageZPK, AES, 1, 16)
	for _, k := range []Key{
		f.acq, f.iss,
		testKey(t, "zmk", UsageZMK, TDES, 1, 24),
		testKey(t, "tak", UsageTAK, TDES, 1, 16),
		testKey(t, "tpk", UsageTPK, TDES, 1, 16),
	} {
		if err := f.ring.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	f.m = NewSoftwareModule(f.ring, DefaultPINPolicy(), nil)
	f.m.now = func() time.Time { return f.now }
	t.Cleanup(f.ring.Zeroize)
	return f
}

const fixturePAN = "4012345678909"

func (f *moduleFixture) block(t *testing.T, k Key, format Format, pin string) []byte {
	t.Helper()
	b, err := Encipher(format, mustPIN(t, pin), fixturePAN, k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *moduleFixture) pinOf(t *testing.T, k Key, format Format, block []byte) string {
	t.Helper()
	p, err := Decipher(format, block, fixturePAN, k)
	if err != nil {
		t.Fatalf("Decipher(result) = %v", err)
	}
	return p.Reveal()
}

func TestModuleTranslate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	out, err := f.m.Translate(ctx, TranslateRequest{
		PAN: fixturePAN, Block: f.block(t, f.acq, Format0, "8142"),
		From: KeyRef{ID: "acq"}, FromFormat: Format0, To: KeyRef{ID: "iss"}, ToFormat: Format4,
	})
	if err != nil {
		t.Fatalf("Translate = %v", err)
	}
	if got := f.pinOf(t, f.iss, Format4, out); got != "8142" {
		t.Error("Translate changed the PIN")
	}
}

func TestModuleTranslateErrors(t *testing.T) {
	f := newFixture(t)
	good := f.block(t, f.acq, Format0, "8142")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		give TranslateRequest
		want error
	}{
		{"source not a PIN key", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "tak"}, To: KeyRef{ID: "iss"}, ToFormat: Format4}, ErrKeyUsage},
		{"destination not a PIN key", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "acq"}, To: KeyRef{ID: "zmk"}, ToFormat: Format0}, ErrKeyUsage},
		{"unknown source", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "nope"}, To: KeyRef{ID: "iss"}, ToFormat: Format4}, ErrUnknownKey},
		{"unknown destination", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "acq"}, To: KeyRef{ID: "nope"}, ToFormat: Format4}, ErrUnknownKey},
		{"unknown version", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "acq", Version: 3}, To: KeyRef{ID: "iss"}, ToFormat: Format4}, ErrUnknownKey},
		{"forbidden 0 to 1", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "acq"}, To: KeyRef{ID: "tpk"}, ToFormat: Format1}, ErrForbiddenTranslation},
		{"AES key for format 0", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "acq"}, To: KeyRef{ID: "iss"}, ToFormat: Format0}, ErrKeyAlgorithmMismatch},
		{"wrong key", context.Background(), TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "tpk"}, To: KeyRef{ID: "iss"}, ToFormat: Format4}, ErrInvalidPINBlock},
		{"nil block", context.Background(), TranslateRequest{PAN: fixturePAN, From: KeyRef{ID: "acq"}, To: KeyRef{ID: "iss"}, ToFormat: Format4}, ErrInvalidPINBlock},
		{"canceled", canceled, TranslateRequest{PAN: fixturePAN, Block: good, From: KeyRef{ID: "acq"}, To: KeyRef{ID: "iss"}, ToFormat: Format4}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.m.Translate(tt.ctx, tt.give)
			if !errors.Is(err, tt.want) {
				t.Errorf("Translate(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

func TestModuleGraceWindow(t *testing.T) {
	f := newFixture(t)
	old := f.block(t, f.acq, Format0, "8142") // under acq v1
	v2 := testKey(t, "acq", UsageZPK, TDES, 2, 16)
	if err := f.ring.Rotate(v2, f.now); err != nil {
		t.Fatal(err)
	}
	req := TranslateRequest{PAN: fixturePAN, Block: old, From: KeyRef{ID: "acq"}, FromFormat: Format0, To: KeyRef{ID: "iss"}, ToFormat: Format4}

	f.now = t0.Add(4 * time.Minute)
	out, err := f.m.Translate(context.Background(), req)
	if err != nil {
		t.Fatalf("Translate(v1 block within grace) = %v", err)
	}
	if f.pinOf(t, f.iss, Format4, out) != "8142" {
		t.Error("grace translation changed the PIN")
	}
	// A block under the new version translates too.
	req.Block = f.block(t, v2, Format0, "8142")
	if _, err := f.m.Translate(context.Background(), req); err != nil {
		t.Fatalf("Translate(v2 block) = %v", err)
	}

	f.now = t0.Add(5 * time.Minute)
	req.Block = old
	if _, err := f.m.Translate(context.Background(), req); !errors.Is(err, ErrInvalidPINBlock) {
		t.Errorf("Translate(v1 block after grace) = %v, want %v", err, ErrInvalidPINBlock)
	}
}

func TestModuleTranslatePair(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	base := PairRequest{PAN: fixturePAN, From: KeyRef{ID: "acq"}, FromFormat: Format0, To: KeyRef{ID: "iss"}, ToFormat: Format4, CheckNewPIN: true}

	change := base
	change.Old, change.New = f.block(t, f.acq, Format0, "8142"), f.block(t, f.acq, Format0, "5830")
	o, n, err := f.m.TranslatePair(ctx, change)
	if err != nil {
		t.Fatalf("TranslatePair(change) = %v", err)
	}
	if f.pinOf(t, f.iss, Format4, o) != "8142" || f.pinOf(t, f.iss, Format4, n) != "5830" {
		t.Error("TranslatePair(change) mixed up or changed the PINs")
	}

	reset := base
	reset.New = f.block(t, f.acq, Format0, "5830")
	o, n, err = f.m.TranslatePair(ctx, reset)
	if err != nil || o != nil || n == nil {
		t.Fatalf("TranslatePair(reset) = %v, %v, %v; want nil old, a new block", o != nil, n != nil, err)
	}
	if f.pinOf(t, f.iss, Format4, n) != "5830" {
		t.Error("TranslatePair(reset) changed the PIN")
	}

	tests := []struct {
		name     string
		old, new string
		check    bool
		want     error
	}{
		{"weak new PIN", "8142", "1234", true, ErrNewPINRejected},
		{"listed new PIN", "8142", "2580", true, ErrNewPINRejected},
		{"PAN digits", "8142", "8909", true, ErrNewPINRejected},
		{"unchanged", "8142", "8142", true, ErrNewPINRejected},
		{"weak but not checked", "8142", "1234", false, nil},
		{"weak old PIN is fine", "1234", "5830", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base
			req.CheckNewPIN = tt.check
			req.Old, req.New = f.block(t, f.acq, Format0, tt.old), f.block(t, f.acq, Format0, tt.new)
			o, n, err := f.m.TranslatePair(ctx, req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("TranslatePair(%s) = %v, want %v", tt.name, err, tt.want)
			}
			if err != nil && (o != nil || n != nil) {
				t.Errorf("TranslatePair(%s) returned blocks with an error", tt.name)
			}
			if err != nil && err.Error() != ErrNewPINRejected.Error() {
				t.Errorf("TranslatePair(%s) error %q says more than %q", tt.name, err, ErrNewPINRejected)
			}
		})
	}

	mixed := base
	mixed.Old = f.block(t, f.acq, Format0, "8142")
	mixed.New = f.block(t, testKey(t, "x", UsageZPK, TDES, 1, 16), Format0, "5830")
	if _, _, err := f.m.TranslatePair(ctx, mixed); !errors.Is(err, ErrInvalidPINBlock) {
		t.Errorf("TranslatePair(new block under another key) = %v, want %v", err, ErrInvalidPINBlock)
	}
	none := base
	if _, _, err := f.m.TranslatePair(ctx, none); !errors.Is(err, ErrInvalidPINBlock) {
		t.Errorf("TranslatePair(no blocks) = %v, want %v", err, ErrInvalidPINBlock)
	}
}

func TestModuleImportTDES(t *testing.T) {
	f := newFixture(t)
	zmk, err := f.ring.Lookup(KeyRef{ID: "zmk"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	// Encipher the key with crypto/des directly, not with the module.
	clearKey := blockHex(t, "0123456789ABCDEFFEDCBA9876543210")
	b, _ := zmk.blockCipher()
	enc := make([]byte, 16)
	b.Encrypt(enc[:8], clearKey[:8])
	b.Encrypt(enc[8:], clearKey[8:])

	req := ImportRequest{ID: "imp", Usage: UsageZPK, Algorithm: TDES, Enciphered: enc, ZMK: KeyRef{ID: "zmk"}, KCV: "08D7B4"}
	info, err := f.m.Import(context.Background(), req)
	if err != nil {
		t.Fatalf("Import = %v", err)
	}
	if info.ID != "imp" || info.KCV != "08D7B4" || info.Version != 1 || info.Length != 16 {
		t.Errorf("Import = %+v, want imp v1 16 bytes KCV 08D7B4", info)
	}
	if kcv, err := f.m.KCV(context.Background(), KeyRef{ID: "imp"}); err != nil || kcv != "08D7B4" {
		t.Errorf("KCV(imp) = %q, %v, want 08D7B4", kcv, err)
	}

	bad := []struct {
		name string
		mod  func(r *ImportRequest)
		want error
	}{
		{"wrong KCV", func(r *ImportRequest) { r.ID = "b1"; r.KCV = "08D7B5" }, ErrKCVMismatch},
		{"no KCV", func(r *ImportRequest) { r.ID = "b2"; r.KCV = "" }, ErrKCVMismatch},
		{"ZMK not a ZMK", func(r *ImportRequest) { r.ID = "b3"; r.ZMK = KeyRef{ID: "acq"} }, ErrKeyUsage},
		{"unknown ZMK", func(r *ImportRequest) { r.ID = "b4"; r.ZMK = KeyRef{ID: "nope"} }, ErrUnknownKey},
		{"ragged length", func(r *ImportRequest) { r.ID = "b5"; r.Enciphered = enc[:12] }, ErrInvalidKey},
		{"duplicate id", func(r *ImportRequest) {}, ErrKeyExists},
		{"rotate unknown id", func(r *ImportRequest) { r.ID = "b6"; r.Rotate = true }, ErrUnknownKey},
		{"rotate to another usage", func(r *ImportRequest) { r.Usage = UsageTPK; r.Rotate = true }, ErrKeyUsage},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := req
			tt.mod(&r)
			if _, err := f.m.Import(context.Background(), r); !errors.Is(err, tt.want) {
				t.Errorf("Import(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}

	// An online key change: the next version of "imp" under the same ZMK.
	clear2 := blockHex(t, "89ABCDEF01234567F0E1D2C3B4A59687")
	v2, err := NewKey("imp", UsageZPK, TDES, 2, clear2)
	if err != nil {
		t.Fatal(err)
	}
	enc2 := make([]byte, 16)
	b.Encrypt(enc2[:8], clear2[:8])
	b.Encrypt(enc2[8:], clear2[8:])
	rot := req
	rot.Enciphered, rot.KCV, rot.Rotate = enc2, v2.KCV(), true
	info, err = f.m.Import(context.Background(), rot)
	if err != nil || info.Version != 2 || info.KCV != v2.KCV() {
		t.Fatalf("Import(rotate) = %+v, %v; want imp v2 KCV %s", info, err, v2.KCV())
	}
	if kcv, err := f.m.KCV(context.Background(), KeyRef{ID: "imp"}); err != nil || kcv != v2.KCV() {
		t.Errorf("KCV(imp) after rotation = %q, %v, want %s", kcv, err, v2.KCV())
	}
	if d := f.ring.Deciphering("imp", t0); len(d) != 2 {
		t.Errorf("after rotation %d versions decipher, want 2 (the previous one in its grace window)", len(d))
	}
}

func TestModuleImportAES(t *testing.T) {
	ring := NewKeyring(0)
	kek, err := ParseHexKey("kek", UsageZMK, AES, 1, "000102030405060708090A0B0C0D0E0F")
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.Add(kek); err != nil {
		t.Fatal(err)
	}
	m := NewSoftwareModule(ring, PINPolicy{}, nil)
	// The AES key of TR-31:2018 A.7.4 (KCV 08793E, as reproduced in
	// github.com/openemv/tr31 test/tr31_decrypt_test.c), wrapped under the
	// RFC 3394 §4.1 KEK with python cryptography's aes_key_wrap.
	wrapped := blockHex(t, "2F0B1E3ACFB457AB73A25F05485C92D4691C8047A30FF352")
	info, err := m.Import(context.Background(), ImportRequest{ID: "k", Usage: UsageZPK, Algorithm: AES, Enciphered: wrapped, ZMK: KeyRef{ID: "kek"}, KCV: "08793E"})
	if err != nil {
		t.Fatalf("Import(AES under AES ZMK) = %v", err)
	}
	if info.Length != 16 || info.Algorithm != AES {
		t.Errorf("Import = %+v", info)
	}
	wrapped[3] ^= 1
	if _, err := m.Import(context.Background(), ImportRequest{ID: "k2", Usage: UsageZPK, Algorithm: AES, Enciphered: wrapped, ZMK: KeyRef{ID: "kek"}, KCV: "08793E"}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Import(tampered wrap) = %v, want %v", err, ErrInvalidKey)
	}
}

// TestAESKeyWrapRFC3394 checks the wrap against RFC 3394 §4.1, §4.4 and §4.6.
func TestAESKeyWrapRFC3394(t *testing.T) {
	tests := []struct {
		name, kek, key, want string
	}{
		{"4.1", "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF", "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{"4.4", "000102030405060708090A0B0C0D0E0F1011121314151617", "00112233445566778899AABBCCDDEEFF0001020304050607", "031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2"},
		{"4.6", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F", "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, err := ParseHexKey("kek", UsageZMK, AES, 1, tt.kek)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := kek.blockCipher()
			got, err := aesKeyWrap(b, blockHex(t, tt.key))
			if err != nil || fmt.Sprintf("%X", got) != tt.want {
				t.Errorf("aesKeyWrap(RFC 3394 %s) = %X, %v, want %s", tt.name, got, err, tt.want)
			}
			back, err := aesKeyUnwrap(b, blockHex(t, tt.want))
			if err != nil || !bytes.Equal(back, blockHex(t, tt.key)) {
				t.Errorf("aesKeyUnwrap(RFC 3394 %s) failed: %v", tt.name, err)
			}
		})
	}
}

func TestModuleGenerate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tests := []struct {
		alg Algorithm
		n   int
	}{{TDES, 16}, {TDES, 24}, {AES, 16}, {AES, 24}, {AES, 32}}
	for i, tt := range tests {
		id := fmt.Sprintf("gen%d", i)
		info, err := f.m.Generate(ctx, id, UsageZPK, tt.alg, tt.n)
		if err != nil {
			t.Fatalf("Generate(%s %d) = %v", tt.alg, tt.n, err)
		}
		k, err := f.ring.Lookup(KeyRef{ID: id}, t0)
		if err != nil || info.KCV != k.KCV() || info.Length != tt.n || info.Algorithm != tt.alg {
			t.Fatalf("Generate(%s %d) = %+v, ring has %v (%v)", tt.alg, tt.n, info, k, err)
		}
		if tt.alg == TDES {
			for j, c := range k.k.material[:tt.n] {
				if bits.OnesCount8(c)%2 != 1 {
					t.Errorf("Generate(TDES %d) byte %d has even parity", tt.n, j)
				}
			}
		}
	}
	for _, bad := range []struct {
		alg Algorithm
		n   int
	}{{TDES, 8}, {TDES, 32}, {AES, 8}, {"rc4", 16}} {
		if _, err := f.m.Generate(ctx, "bad", UsageZPK, bad.alg, bad.n); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Generate(%s %d) = %v, want %v", bad.alg, bad.n, err, ErrInvalidKey)
		}
	}
	if _, err := f.m.Generate(ctx, "acq", UsageZPK, TDES, 16); !errors.Is(err, ErrKeyExists) {
		t.Errorf("Generate(existing id) = %v, want %v", err, ErrKeyExists)
	}
}
