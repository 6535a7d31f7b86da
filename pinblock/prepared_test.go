package pinblock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestPreparedTranslateProperty: on a prepared route, encode → translate →
// decode gives the PIN back for every pair PCI PIN 3-3 allows, in both the
// single and the pair call, with the results in the caller's buffer; every
// forbidden pair is refused when the route is prepared.
func TestPreparedTranslateProperty(t *testing.T) {
	ctx := context.Background()
	formats := []Format{Format0, Format1, Format2, Format3, Format4}
	for _, from := range formats {
		for _, to := range formats {
			t.Run(fmt.Sprintf("%s-%s", from, to), func(t *testing.T) {
				ring := NewKeyring(time.Hour)
				fromAlg, toAlg := from.Algorithm(), to.Algorithm()
				if fromAlg == "" {
					fromAlg = TDES
				}
				if toAlg == "" {
					toAlg = TDES
				}
				fk := testKey(t, "from", UsageZPK, fromAlg, 1, 16)
				tk := testKey(t, "to", UsageTPK, toAlg, 1, 24)
				for _, k := range []Key{fk, tk} {
					if err := ring.Add(k); err != nil {
						t.Fatal(err)
					}
				}
				m := NewSoftwareModule(ring, DefaultPINPolicy(), nil)
				tr, err := m.Prepare(ctx, Route{From: KeyRef{ID: "from"}, FromFormat: from, To: KeyRef{ID: "to"}, ToFormat: to})
				if !TranslationAllowed(from, to) {
					if !errors.Is(err, ErrForbiddenTranslation) {
						t.Fatalf("Prepare(%s -> %s) = %v, want %v", from, to, err, ErrForbiddenTranslation)
					}
					return
				}
				if err != nil {
					t.Fatalf("Prepare(%s -> %s) = %v", from, to, err)
				}
				for range 20 {
					oldPIN := randomDigits(t, randomLen(t, MinPINLength, MaxPINLength))
					newPIN := randomDigits(t, randomLen(t, MinPINLength, MaxPINLength))
					pan := randomDigits(t, randomLen(t, 12, MaxPANLength))
					policy := DefaultPINPolicy()
					if policy.Check(mustPIN(t, newPIN), pan) != nil || newPIN == oldPIN {
						continue
					}
					oldB, err := Encipher(from, mustPIN(t, oldPIN), pan, fk)
					if err != nil {
						t.Fatal(err)
					}
					newB, err := Encipher(from, mustPIN(t, newPIN), pan, fk)
					if err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, BufferSize)
					out, err := tr.Translate(ctx, buf, pan, oldB)
					if err != nil {
						t.Fatalf("Translate(%s -> %s) = %v", from, to, err)
					}
					checkTranslated(t, to, out, pan, tk, oldPIN, buf)
					o, n, err := tr.TranslatePair(ctx, buf, PairBlocks{PAN: pan, Old: oldB, New: newB, CheckNewPIN: true})
					if err != nil {
						t.Fatalf("TranslatePair(%s -> %s) = %v", from, to, err)
					}
					checkTranslated(t, to, o, pan, tk, oldPIN, buf)
					checkTranslated(t, to, n, pan, tk, newPIN, buf)
				}
			})
		}
	}
}

// checkTranslated: out is a block of format f under k that gives want, and
// lies inside buf.
func checkTranslated(t *testing.T, f Format, out []byte, pan string, k Key, want string, buf []byte) {
	t.Helper()
	if len(out) != f.BlockSize() {
		t.Fatalf("result is %d bytes, want %d", len(out), f.BlockSize())
	}
	if !within(out, buf) {
		t.Fatal("result does not lie in the caller's buffer")
	}
	p, err := Decipher(f, out, pan, k)
	if err != nil {
		t.Fatalf("Decipher(%s) = %v", f, err)
	}
	if p.Reveal() != want {
		t.Fatalf("%s result deciphers to another PIN", f)
	}
}

// within reports whether out starts inside buf's backing array.
func within(out, buf []byte) bool {
	b := buf[:cap(buf)]
	for i := range b {
		if &b[i] == &out[0] {
			return true
		}
	}
	return false
}

// TestPreparedBuffer: the bytes of buf the call used beyond its results are
// zero afterwards, also after an error; a buffer too small is left alone and
// a new one is used.
func TestPreparedBuffer(t *testing.T) {
	ctx := context.Background()
	m, acq, _ := preparedFixture(t)
	tr, err := m.Prepare(ctx, Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "iss-t"}, ToFormat: Format0})
	if err != nil {
		t.Fatal(err)
	}
	pan := "4111111111111111"
	blk, err := Encipher(Format4, mustPIN(t, "8142"), pan, acq)
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{0xEE}, BufferSize)
	o, n, err := tr.TranslatePair(ctx, buf, PairBlocks{PAN: pan, Old: blk, New: blk})
	if err != nil {
		t.Fatal(err)
	}
	// F4 -> F0: each 8-byte result sits at the start of a 16-byte working area.
	if &o[0] != &buf[0] || &n[0] != &buf[16] {
		t.Fatal("results are not at the start of their working areas in buf")
	}
	if !bytes.Equal(buf[8:16], make([]byte, 8)) || !bytes.Equal(buf[24:32], make([]byte, 8)) {
		t.Fatalf("working space past the results is not cleared: % X", buf)
	}

	bad := append([]byte(nil), blk...)
	bad[0] ^= 1
	buf = bytes.Repeat([]byte{0xEE}, BufferSize)
	if _, _, err := tr.TranslatePair(ctx, buf, PairBlocks{PAN: pan, Old: bad, New: blk}); !errors.Is(err, ErrInvalidPINBlock) {
		t.Fatalf("TranslatePair(corrupted block) = %v, want %v", err, ErrInvalidPINBlock)
	}
	if !bytes.Equal(buf, make([]byte, BufferSize)) {
		t.Fatalf("buffer after an error = % X, want all zero", buf)
	}

	small := bytes.Repeat([]byte{0xEE}, 4)
	out, err := tr.Translate(ctx, small, pan, blk)
	if err != nil || len(out) != 8 || !bytes.Equal(small, bytes.Repeat([]byte{0xEE}, 4)) {
		t.Fatalf("Translate(4-byte buffer) = %d bytes, %v; buffer %X", len(out), err, small)
	}
}

func preparedFixture(t *testing.T) (m *SoftwareModule, acq, issT Key) {
	t.Helper()
	ring := NewKeyring(time.Minute)
	acq = testKey(t, "acq", UsageZPK, AES, 1, 16)
	issT = testKey(t, "iss-t", UsageZPK, TDES, 1, 16)
	for _, k := range []Key{acq, issT, testKey(t, "pvk", UsagePVK, TDES, 1, 16), testKey(t, "iss-a", UsageZPK, AES, 1, 32)} {
		if err := ring.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	return NewSoftwareModule(ring, DefaultPINPolicy(), nil), acq, issT
}

func TestPrepareErrors(t *testing.T) {
	m, _, _ := preparedFixture(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		give Route
		want error
	}{
		{"unknown from", context.Background(), Route{From: KeyRef{ID: "nope"}, FromFormat: Format4, To: KeyRef{ID: "iss-a"}, ToFormat: Format4}, ErrUnknownKey},
		{"unknown to", context.Background(), Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "nope"}, ToFormat: Format4}, ErrUnknownKey},
		{"not a PIN key", context.Background(), Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "pvk"}, ToFormat: Format0}, ErrKeyUsage},
		{"AES key for format 0", context.Background(), Route{From: KeyRef{ID: "acq"}, FromFormat: Format0, To: KeyRef{ID: "iss-t"}, ToFormat: Format0}, ErrKeyAlgorithmMismatch},
		{"TDES key for format 4", context.Background(), Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "iss-t"}, ToFormat: Format4}, ErrKeyAlgorithmMismatch},
		{"3 to 1", context.Background(), Route{From: KeyRef{ID: "iss-t"}, FromFormat: Format3, To: KeyRef{ID: "iss-t"}, ToFormat: Format1}, ErrForbiddenTranslation},
		{"unknown format", context.Background(), Route{From: KeyRef{ID: "acq"}, FromFormat: Format(7), To: KeyRef{ID: "iss-a"}, ToFormat: Format4}, ErrUnsupportedFormat},
		{"cancelled", cancelled, Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "iss-a"}, ToFormat: Format4}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Prepare(tt.ctx, tt.give); !errors.Is(err, tt.want) {
				t.Errorf("Prepare(%+v) = %v, want %v", tt.give, err, tt.want)
			}
		})
	}
}

// TestPreparedFollowsKeyring: a prepared route resolves its keys again after
// the ring changes (rotation, removal) and when a grace window it relied on
// ends.
func TestPreparedFollowsKeyring(t *testing.T) {
	ctx := context.Background()
	m, acq, _ := preparedFixture(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	tr, err := m.Prepare(ctx, Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "iss-a"}, ToFormat: Format4})
	if err != nil {
		t.Fatal(err)
	}
	pan := "4111111111111111"
	v1Block, err := Encipher(Format4, mustPIN(t, "8142"), pan, acq)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Translate(ctx, nil, pan, v1Block); err != nil {
		t.Fatalf("Translate(v1 block) = %v", err)
	}

	v2 := testKey(t, "acq", UsageZPK, AES, 2, 16)
	if err := m.ring.Rotate(v2, now); err != nil {
		t.Fatal(err)
	}
	v2Block, err := Encipher(Format4, mustPIN(t, "8142"), pan, v2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Translate(ctx, nil, pan, v2Block); err != nil {
		t.Fatalf("after rotation, Translate(v2 block) = %v", err)
	}
	if _, err := tr.Translate(ctx, nil, pan, v1Block); err != nil {
		t.Fatalf("in the grace window, Translate(v1 block) = %v", err)
	}
	now = now.Add(m.ring.Grace())
	if _, err := tr.Translate(ctx, nil, pan, v1Block); !errors.Is(err, ErrInvalidPINBlock) {
		t.Fatalf("after the grace window, Translate(v1 block) = %v, want %v", err, ErrInvalidPINBlock)
	}
	if _, err := tr.Translate(ctx, nil, pan, v2Block); err != nil {
		t.Fatalf("after the grace window, Translate(v2 block) = %v", err)
	}

	if err := m.ring.Remove("iss-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Translate(ctx, nil, pan, v2Block); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after removing the issuer key, Translate = %v, want %v", err, ErrUnknownKey)
	}
}

// TestFormat4TranslationKeepsPlainField: F4 -> F4 re-enciphers the plain-text
// PIN field it deciphered, random half included; F0 -> F4 draws a fresh
// random half each time.
func TestFormat4TranslationKeepsPlainField(t *testing.T) {
	ctx := context.Background()
	m, acq, _ := preparedFixture(t)
	iss, err := m.ring.Lookup(KeyRef{ID: "iss-a"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pan := "4111111111111111"
	in, err := Encipher(Format4, mustPIN(t, "8142"), pan, acq)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := m.Prepare(ctx, Route{From: KeyRef{ID: "acq"}, FromFormat: Format4, To: KeyRef{ID: "iss-a"}, ToFormat: Format4})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tr.Translate(ctx, nil, pan, in)
	if err != nil {
		t.Fatal(err)
	}
	if plainField(t, in, pan, acq) != plainField(t, out, pan, iss) {
		t.Fatal("F4 -> F4 changed the plain-text PIN field")
	}
}

// plainField deciphers a format 4 block to its plain-text PIN field, as text
// a test may compare (never print).
func plainField(t *testing.T, block []byte, pan string, k Key) string {
	t.Helper()
	b, err := k.blockCipher()
	if err != nil {
		t.Fatal(err)
	}
	var pf panFields
	if err := pf.set(pan); err != nil {
		t.Fatal(err)
	}
	w := make([]byte, 16)
	var pin SecretPIN
	if err := decipherInto(w, Format4, block, &pf, b, &pin); err != nil {
		t.Fatal(err)
	}
	return string(w)
}
