package pinblock_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"strings"
	"testing"
)

const genPAN = "6228481200000017"

// genModule is a software module over the development keys, with a spool
// printer in a temporary directory.
func genModule(t *testing.T, policy pinblock.PINPolicy, rnd io.Reader) (*pinblock.SoftwareModule, *pinblock.SpoolPrinter) {
	t.Helper()
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ring.Zeroize)
	m := pinblock.NewSoftwareModule(ring, policy, rnd)
	p, err := pinblock.NewSpoolPrinter(filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	m.SetMailerPrinter(p)
	return m, p
}

func issuerRef() pinblock.KeyRef { return pinblock.KeyRef{ID: devkeys.IssuerZPK} }

// digitBytes are random bytes that draw exactly the given digits (each byte
// below 250 gives byte % 10), followed by crypto/rand for the block fill.
func digitBytes(pins ...string) io.Reader {
	var b []byte
	for _, p := range pins {
		for i := 0; i < len(p); i++ {
			b = append(b, p[i]-'0')
		}
		// The draw reads 32 bytes at a time: pad the rest with refused bytes.
		for len(b)%32 != 0 {
			b = append(b, 250)
		}
	}
	return io.MultiReader(bytes.NewReader(b), cryptoReader{})
}

type cryptoReader struct{}

func (cryptoReader) Read(p []byte) (int, error) { return len(p), pinblock.ReadFill(nil, p) }

func TestGeneratePINDeciphersUnderIssuerKey(t *testing.T) {
	tests := []struct {
		give   pinblock.Format
		length int
		want   int
	}{
		{give: pinblock.Format4, length: 0, want: pinblock.DefaultGeneratedPINLength},
		{give: pinblock.Format4, length: 4, want: 4},
		{give: pinblock.Format4, length: 12, want: 12},
	}
	iss, err := devkeys.Key(devkeys.IssuerZPK)
	if err != nil {
		t.Fatal(err)
	}
	policy := pinblock.DefaultPINPolicy()
	m, _ := genModule(t, policy, nil)
	for _, tt := range tests {
		g, err := m.GeneratePIN(context.Background(), pinblock.GeneratePINRequest{PAN: genPAN, Length: tt.length, To: issuerRef(), ToFormat: tt.give})
		if err != nil {
			t.Fatalf("GeneratePIN(%v, %d) = %v", tt.give, tt.length, err)
		}
		if len(g.Block) != tt.give.BlockSize() || len(g.Sealed) != 16 {
			t.Fatalf("GeneratePIN(%v) block of %d bytes, sealed %d; want %d and 16", tt.give, len(g.Block), len(g.Sealed), tt.give.BlockSize())
		}
		pin, err := pinblock.Decipher(tt.give, g.Block, genPAN, iss)
		if err != nil {
			t.Fatalf("Decipher(GeneratePIN block) = %v", err)
		}
		if pin.Len() != tt.want {
			t.Errorf("GeneratePIN(length %d) gave %d digits, want %d", tt.length, pin.Len(), tt.want)
		}
		if err := policy.Check(pin, genPAN); err != nil {
			t.Errorf("GeneratePIN gave a PIN the policy refuses")
		}
	}
}

func TestGeneratePINSkipsWeakDraws(t *testing.T) {
	// 1234 (a sequence) and 0000 (repeated) are refused by the default
	// policy; 4826 is not.
	m, _ := genModule(t, pinblock.DefaultPINPolicy(), digitBytes("1234", "0000", "4826"))
	g, err := m.GeneratePIN(context.Background(), pinblock.GeneratePINRequest{PAN: genPAN, Length: 4, To: issuerRef(), ToFormat: pinblock.Format4})
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := devkeys.Key(devkeys.IssuerZPK)
	pin, err := pinblock.Decipher(pinblock.Format4, g.Block, genPAN, iss)
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Zeroize()
	if pin.Reveal() != "4826" {
		t.Errorf("GeneratePIN after two weak draws did not take the third draw")
	}
}

func TestGeneratePINDigitsAreUniform(t *testing.T) {
	// Bytes 250–255 must be skipped, else digits 0–5 come up more often.
	// A reader of only 255s then 7s must give 7s only.
	r := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{255}, 64)), bytes.NewReader(bytes.Repeat([]byte{7}, 32)), cryptoReader{})
	m, _ := genModule(t, pinblock.PINPolicy{}, r)
	g, err := m.GeneratePIN(context.Background(), pinblock.GeneratePINRequest{PAN: genPAN, Length: 4, To: issuerRef(), ToFormat: pinblock.Format4})
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := devkeys.Key(devkeys.IssuerZPK)
	pin, err := pinblock.Decipher(pinblock.Format4, g.Block, genPAN, iss)
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Zeroize()
	if pin.Reveal() != "7777" {
		t.Errorf("GeneratePIN used bytes at or above 250")
	}
}

func TestGeneratePINErrors(t *testing.T) {
	all := pinblock.PINPolicy{Excluded: nil, RejectPANDigits: true}
	tests := []struct {
		name   string
		give   pinblock.GeneratePINRequest
		policy *pinblock.PINPolicy
		want   error
	}{
		{name: "too short", give: pinblock.GeneratePINRequest{PAN: genPAN, Length: 3, To: issuerRef(), ToFormat: pinblock.Format4}, want: pinblock.ErrInvalidPIN},
		{name: "too long", give: pinblock.GeneratePINRequest{PAN: genPAN, Length: 13, To: issuerRef(), ToFormat: pinblock.Format4}, want: pinblock.ErrInvalidPIN},
		{name: "bad PAN", give: pinblock.GeneratePINRequest{PAN: "62284812x0000017", To: issuerRef(), ToFormat: pinblock.Format4}, want: pinblock.ErrInvalidPAN},
		{name: "unknown key", give: pinblock.GeneratePINRequest{PAN: genPAN, To: pinblock.KeyRef{ID: "nope"}, ToFormat: pinblock.Format4}, want: pinblock.ErrUnknownKey},
		{name: "not a PIN key", give: pinblock.GeneratePINRequest{PAN: genPAN, To: pinblock.KeyRef{ID: devkeys.IssuerPVK}, ToFormat: pinblock.Format0}, want: pinblock.ErrKeyUsage},
		{name: "format 2", give: pinblock.GeneratePINRequest{PAN: genPAN, To: pinblock.KeyRef{ID: devkeys.ATMZPK}, ToFormat: pinblock.Format2}, want: pinblock.ErrForbiddenTranslation},
		{name: "algorithm", give: pinblock.GeneratePINRequest{PAN: genPAN, To: issuerRef(), ToFormat: pinblock.Format0}, want: pinblock.ErrKeyAlgorithmMismatch},
		// A reader that always draws 4s, against a PAN of 4s and a policy
		// refusing PAN digits: every draw is refused.
		{name: "policy refuses every draw", give: pinblock.GeneratePINRequest{PAN: "444444444444", Length: 4, To: issuerRef(), ToFormat: pinblock.Format4}, policy: &all, want: pinblock.ErrNewPINRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := pinblock.DefaultPINPolicy()
			var rnd io.Reader
			if tt.policy != nil {
				policy = *tt.policy
				rnd = bytes.NewReader(bytes.Repeat([]byte{4}, 32*pinblock.MaxPINDraws))
			}
			m, _ := genModule(t, policy, rnd)
			_, err := m.GeneratePIN(context.Background(), tt.give)
			if !errors.Is(err, tt.want) {
				t.Fatalf("GeneratePIN(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
	m, _ := genModule(t, pinblock.DefaultPINPolicy(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.GeneratePIN(ctx, pinblock.GeneratePINRequest{PAN: genPAN, To: issuerRef(), ToFormat: pinblock.Format4}); !errors.Is(err, context.Canceled) {
		t.Errorf("GeneratePIN(cancelled) = %v, want context.Canceled", err)
	}
}

// readMailer returns the one mailer file in the spool and checks its mode.
func readMailer(t *testing.T, p *pinblock.SpoolPrinter, ref string) string {
	t.Helper()
	path := filepath.Join(p.Dir(), ref+pinblock.MailerFileSuffix)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mailer file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPrintMailerWritesThePINOnlyThere(t *testing.T) {
	m, p := genModule(t, pinblock.DefaultPINPolicy(), nil)
	ctx := context.Background()
	g, err := m.GeneratePIN(ctx, pinblock.GeneratePINRequest{PAN: genPAN, Length: 6, To: issuerRef(), ToFormat: pinblock.Format4})
	if err != nil {
		t.Fatal(err)
	}
	iss, _ := devkeys.Key(devkeys.IssuerZPK)
	pin, err := pinblock.Decipher(pinblock.Format4, g.Block, genPAN, iss)
	if err != nil {
		t.Fatal(err)
	}
	clearPIN := pin.Reveal()
	pin.Zeroize()

	err = m.PrintMailer(ctx, pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed, Reference: "op-1",
		AddressLines: []string{"Development Bank, Branch 0117", "1 Example Road\nInjected"}})
	if err != nil {
		t.Fatal(err)
	}
	got := readMailer(t, p, "op-1")
	wantLines := []string{
		"PIN MAILER",
		"Reference: op-1",
		"Card: 622848******0017",
		"Development Bank, Branch 0117",
		"1 Example Road Injected",
		"Your new PIN: " + clearPIN,
	}
	for _, w := range wantLines {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("mailer lacks the line %q (PIN line redacted in this message if it is the one)", redactPINLine(w))
		}
	}
	if strings.Contains(got, genPAN) {
		t.Errorf("mailer shows the full PAN")
	}
	if strings.Count(got, clearPIN) != 1 {
		t.Errorf("mailer shows the PIN %d times, want once", strings.Count(got, clearPIN))
	}
	// The sealed PIN and the issuer block do not show it either.
	for _, b := range [][]byte{g.Block, g.Sealed} {
		if bytes.Contains(b, []byte(clearPIN)) {
			t.Errorf("an enciphered block contains the clear PIN")
		}
	}

	// A second mailer with the same reference never overwrites the first.
	if err := m.PrintMailer(ctx, pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed, Reference: "op-1"}); !errors.Is(err, pinblock.ErrMailerUnavailable) {
		t.Errorf("PrintMailer(same reference) = %v, want ErrMailerUnavailable", err)
	}
	if got2 := readMailer(t, p, "op-1"); got2 != got {
		t.Errorf("the first mailer changed")
	}
}

func redactPINLine(s string) string {
	if strings.HasPrefix(s, "Your new PIN: ") {
		return "Your new PIN: <redacted>"
	}
	return s
}

func TestPrintMailerErrors(t *testing.T) {
	ctx := context.Background()
	m, p := genModule(t, pinblock.DefaultPINPolicy(), nil)
	g, err := m.GeneratePIN(ctx, pinblock.GeneratePINRequest{PAN: genPAN, To: issuerRef(), ToFormat: pinblock.Format4})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := genModule(t, pinblock.DefaultPINPolicy(), nil)
	tampered := append([]byte(nil), g.Sealed...)
	tampered[0] ^= 1
	tests := []struct {
		name string
		mod  *pinblock.SoftwareModule
		give pinblock.MailerRequest
		want error
	}{
		{name: "another PAN", mod: m, give: pinblock.MailerRequest{PAN: "6228481200000025", Sealed: g.Sealed, Reference: "a"}, want: pinblock.ErrInvalidPINBlock},
		{name: "tampered", mod: m, give: pinblock.MailerRequest{PAN: genPAN, Sealed: tampered, Reference: "b"}, want: pinblock.ErrInvalidPINBlock},
		{name: "another module", mod: other, give: pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed, Reference: "c"}, want: pinblock.ErrInvalidPINBlock},
		{name: "short", mod: m, give: pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed[:8], Reference: "d"}, want: pinblock.ErrInvalidPINBlock},
		{name: "path in reference", mod: m, give: pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed, Reference: "../x"}, want: pinblock.ErrMailerUnavailable},
		{name: "empty reference", mod: m, give: pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed}, want: pinblock.ErrMailerUnavailable},
	}
	for _, tt := range tests {
		if err := tt.mod.PrintMailer(ctx, tt.give); !errors.Is(err, tt.want) {
			t.Errorf("PrintMailer(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	entries, _ := os.ReadDir(p.Dir())
	if len(entries) != 0 {
		t.Errorf("failed PrintMailer calls left %d files in the spool", len(entries))
	}
	m.SetMailerPrinter(nil)
	if err := m.PrintMailer(ctx, pinblock.MailerRequest{PAN: genPAN, Sealed: g.Sealed, Reference: "e"}); !errors.Is(err, pinblock.ErrMailerUnavailable) {
		t.Errorf("PrintMailer(no printer) = %v, want ErrMailerUnavailable", err)
	}
}

func TestSpoolPrinterRefusesBadInput(t *testing.T) {
	p, err := pinblock.NewSpoolPrinter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pin := mustGenPIN(t, "4826")
	if err := p.PrintMailer(context.Background(), pinblock.MailerContent{Reference: "x/y"}, &pin); err == nil {
		t.Errorf("PrintMailer(reference with a slash) = nil, want an error")
	}
	if err := p.PrintMailer(context.Background(), pinblock.MailerContent{Reference: "ok"}, &pinblock.SecretPIN{}); err == nil {
		t.Errorf("PrintMailer(empty PIN) = nil, want an error")
	}
	if _, err := pinblock.NewSpoolPrinter(""); err == nil {
		t.Errorf("NewSpoolPrinter(\"\") = nil error, want one")
	}
}

func mustGenPIN(t *testing.T, s string) pinblock.SecretPIN {
	t.Helper()
	p, err := pinblock.NewSecretPIN(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
