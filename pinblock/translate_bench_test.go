package pinblock

import (
	"context"
	"crypto/subtle"
	"testing"
	"time"
)

// benchFixture: a module with a TDES, an AES and an SM4 ZPK on each side.
type benchFixture struct {
	m             *SoftwareModule
	acqT, issT    Key // TDES
	acqA, issA    Key // AES
	acqS, issS    Key // SM4
	pan           string
	f0, f4, f0new []byte
	s0, s4        []byte // SM4-0 and SM4-4 under acqS
	ctx           context.Context
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	f := &benchFixture{pan: "4111111111111111", ctx: context.Background()}
	ring := NewKeyring(time.Hour)
	f.acqT = testKey(b, "acq-t", UsageZPK, TDES, 1, 16)
	f.issT = testKey(b, "iss-t", UsageZPK, TDES, 1, 16)
	f.acqA = testKey(b, "acq-a", UsageZPK, AES, 1, 16)
	f.issA = testKey(b, "iss-a", UsageZPK, AES, 1, 16)
	f.acqS = testKey(b, "acq-s", UsageZPK, SM4, 1, 16)
	f.issS = testKey(b, "iss-s", UsageZPK, SM4, 1, 16)
	for _, k := range []Key{f.acqT, f.issT, f.acqA, f.issA, f.acqS, f.issS} {
		if err := ring.Add(k); err != nil {
			b.Fatal(err)
		}
	}
	f.m = NewSoftwareModule(ring, DefaultPINPolicy(), nil)
	var err error
	if f.f0, err = Encipher(Format0, mustPIN(b, "8142"), f.pan, f.acqT); err != nil {
		b.Fatal(err)
	}
	if f.f0new, err = Encipher(Format0, mustPIN(b, "5830"), f.pan, f.acqT); err != nil {
		b.Fatal(err)
	}
	if f.f4, err = Encipher(Format4, mustPIN(b, "8142"), f.pan, f.acqA); err != nil {
		b.Fatal(err)
	}
	if f.s0, err = Encipher(Format0SM4, mustPIN(b, "8142"), f.pan, f.acqS); err != nil {
		b.Fatal(err)
	}
	if f.s4, err = Encipher(Format4SM4, mustPIN(b, "8142"), f.pan, f.acqS); err != nil {
		b.Fatal(err)
	}
	return f
}

// check verifies one translation result before a timed loop.
func (f *benchFixture) check(b *testing.B, out []byte, format Format, k Key, want string) {
	b.Helper()
	p, err := Decipher(format, out, f.pan, k)
	if err != nil || p.Reveal() != want {
		b.Fatalf("translation result does not decipher to the PIN (%v)", err)
	}
}

// BenchmarkTranslate measures translation on a prepared route (the
// gateway's path: keys resolved once, results in the caller's buffer) beside
// its baseline, the block-cipher calls the translation cannot avoid. Each
// …/by-name is the one-shot SecurityModule call, which also resolves both key
// labels and allocates its result; BenchmarkKeyLookup measures a lookup alone.
func BenchmarkTranslate(b *testing.B) {
	f := newBenchFixture(b)
	tdesT, _ := f.acqT.blockCipher()
	tdesI, _ := f.issT.blockCipher()
	aesA, _ := f.acqA.blockCipher()
	aesI, _ := f.issA.blockCipher()
	sm4A, _ := f.acqS.blockCipher()
	sm4I, _ := f.issS.blockCipher()

	req := func(block []byte, from string, ff Format, to string, tf Format) TranslateRequest {
		return TranslateRequest{PAN: f.pan, Block: block, From: KeyRef{ID: from}, FromFormat: ff, To: KeyRef{ID: to}, ToFormat: tf}
	}
	run := func(name string, r TranslateRequest, outKey Key) {
		tr, err := f.m.Prepare(f.ctx, Route{From: r.From, FromFormat: r.FromFormat, To: r.To, ToFormat: r.ToFormat})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, BufferSize)
		calls := map[string]func() ([]byte, error){
			name:              func() ([]byte, error) { return tr.Translate(f.ctx, buf, f.pan, r.Block) },
			name + "/by-name": func() ([]byte, error) { return f.m.Translate(f.ctx, r) },
		}
		for _, sub := range []string{name, name + "/by-name"} {
			call := calls[sub]
			b.Run(sub, func(b *testing.B) {
				out, err := call()
				if err != nil {
					b.Fatal(err)
				}
				f.check(b, out, r.ToFormat, outKey, "8142")
				b.ReportAllocs()
				b.SetBytes(int64(len(r.Block)))
				for b.Loop() {
					if _, err := call(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}

	run("F0-F0-tdes", req(f.f0, "acq-t", Format0, "iss-t", Format0), f.issT)
	b.Run("F0-F0-tdes/baseline", func(b *testing.B) {
		// What a translation cannot avoid: one TDES decrypt, one TDES encrypt.
		var x [8]byte
		b.ReportAllocs()
		b.SetBytes(8)
		for b.Loop() {
			tdesT.Decrypt(x[:], f.f0)
			tdesI.Encrypt(x[:], x[:])
		}
	})

	run("F4-F4-aes", req(f.f4, "acq-a", Format4, "iss-a", Format4), f.issA)
	b.Run("F4-F4-aes/baseline", func(b *testing.B) {
		// Two AES decrypts and two AES encrypts.
		var x [16]byte
		b.ReportAllocs()
		b.SetBytes(16)
		for b.Loop() {
			aesA.Decrypt(x[:], f.f4)
			aesA.Decrypt(x[:], x[:])
			aesI.Encrypt(x[:], x[:])
			aesI.Encrypt(x[:], x[:])
		}
	})

	b.Run("F4-F4-aes/floor", func(b *testing.B) {
		// The baseline plus the work ISO 9564-1 format 4 adds to it and no
		// F4 -> F4 translation can skip: building the PAN field and XORing
		// it into the block on each side. Read against the baseline, it is
		// the least any translation could cost here.
		x := make([]byte, 16)
		b.ReportAllocs()
		b.SetBytes(16)
		for b.Loop() {
			var pf panFields
			if err := pf.set(f.pan); err != nil {
				b.Fatal(err)
			}
			aesA.Decrypt(x, f.f4)
			subtle.XORBytes(x, x, pf.f4[:])
			aesA.Decrypt(x, x)
			aesI.Encrypt(x, x)
			subtle.XORBytes(x, x, pf.f4[:])
			aesI.Encrypt(x, x)
		}
	})

	run("F0-F4", req(f.f0, "acq-t", Format0, "iss-a", Format4), f.issA)
	b.Run("F0-F4/baseline", func(b *testing.B) {
		// One TDES decrypt, two AES encrypts.
		var x [8]byte
		var y [16]byte
		b.ReportAllocs()
		b.SetBytes(8)
		for b.Loop() {
			tdesT.Decrypt(x[:], f.f0)
			aesI.Encrypt(y[:], y[:])
			aesI.Encrypt(y[:], y[:])
		}
	})

	run("SM4-4-SM4-4", req(f.s4, "acq-s", Format4SM4, "iss-s", Format4SM4), f.issS)
	b.Run("SM4-4-SM4-4/baseline", func(b *testing.B) {
		// Two SM4 decrypts and two SM4 encrypts.
		var x [16]byte
		b.ReportAllocs()
		b.SetBytes(16)
		for b.Loop() {
			sm4A.Decrypt(x[:], f.s4)
			sm4A.Decrypt(x[:], x[:])
			sm4I.Encrypt(x[:], x[:])
			sm4I.Encrypt(x[:], x[:])
		}
	})

	run("SM4-0-SM4-4", req(f.s0, "acq-s", Format0SM4, "iss-s", Format4SM4), f.issS)
	b.Run("SM4-0-SM4-4/baseline", func(b *testing.B) {
		// One SM4 decrypt, two SM4 encrypts.
		var x, y [16]byte
		b.ReportAllocs()
		b.SetBytes(16)
		for b.Loop() {
			sm4A.Decrypt(x[:], f.s0)
			sm4I.Encrypt(y[:], y[:])
			sm4I.Encrypt(y[:], y[:])
		}
	})

	run("SM4-0-F4", req(f.s0, "acq-s", Format0SM4, "iss-a", Format4), f.issA)
	b.Run("SM4-0-F4/baseline", func(b *testing.B) {
		// One SM4 decrypt, two AES encrypts: an SM4 ATM network to an AES issuer.
		var x, y [16]byte
		b.ReportAllocs()
		b.SetBytes(16)
		for b.Loop() {
			sm4A.Decrypt(x[:], f.s0)
			aesI.Encrypt(y[:], y[:])
			aesI.Encrypt(y[:], y[:])
		}
	})

	pair := PairRequest{PAN: f.pan, Old: f.f0, New: f.f0new, From: KeyRef{ID: "acq-t"}, FromFormat: Format0, To: KeyRef{ID: "iss-t"}, ToFormat: Format0, CheckNewPIN: true}
	checkPair := func(b *testing.B, o, n []byte) {
		b.Helper()
		f.check(b, o, Format0, f.issT, "8142")
		f.check(b, n, Format0, f.issT, "5830")
	}
	tr, err := f.m.Prepare(f.ctx, Route{From: pair.From, FromFormat: pair.FromFormat, To: pair.To, ToFormat: pair.ToFormat})
	if err != nil {
		b.Fatal(err)
	}
	blocks := PairBlocks{PAN: pair.PAN, Old: pair.Old, New: pair.New, CheckNewPIN: true}
	buf := make([]byte, BufferSize)
	pairCalls := map[string]func() ([]byte, []byte, error){
		"pair":         func() ([]byte, []byte, error) { return tr.TranslatePair(f.ctx, buf, blocks) },
		"pair/by-name": func() ([]byte, []byte, error) { return f.m.TranslatePair(f.ctx, pair) },
	}
	for _, name := range []string{"pair", "pair/by-name"} {
		call := pairCalls[name]
		b.Run(name, func(b *testing.B) {
			o, n, err := call()
			if err != nil {
				b.Fatal(err)
			}
			checkPair(b, o, n)
			b.ReportAllocs()
			b.SetBytes(16)
			for b.Loop() {
				if _, _, err := call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("pair/baseline", func(b *testing.B) {
		// Two TDES decrypts, two TDES encrypts.
		var x [8]byte
		b.ReportAllocs()
		b.SetBytes(16)
		for b.Loop() {
			tdesT.Decrypt(x[:], f.f0)
			tdesI.Encrypt(x[:], x[:])
			tdesT.Decrypt(x[:], f.f0new)
			tdesI.Encrypt(x[:], x[:])
		}
	})
}

func BenchmarkKeyLookup(b *testing.B) {
	ring := NewKeyring(time.Hour)
	for i := range 64 {
		if err := ring.Add(testKey(b, "zpk-"+string(rune('A'+i%26))+string(rune('a'+i/26)), UsageZPK, TDES, 1, 16)); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	ref := KeyRef{ID: "zpk-Mb"}
	if k, err := ring.Lookup(ref, now); err != nil || k.ID() != "zpk-Mb" {
		b.Fatalf("Lookup = %v, %v", k, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ring.Lookup(ref, now); err != nil {
			b.Fatal(err)
		}
	}
}
