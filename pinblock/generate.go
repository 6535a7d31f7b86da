package pinblock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultGeneratedPINLength is the length of a generated PIN when a
// GeneratePINRequest does not name one.
const DefaultGeneratedPINLength = 6

// maxPINDraws bounds the draws of GeneratePIN. With the default policy about
// one 4-digit draw in 200 is refused, so reaching the bound means a policy
// that refuses (nearly) everything: ErrNewPINRejected.
const maxPINDraws = 1000

// ErrMailerUnavailable is returned by PrintMailer when the module has no
// mailer printer or the printer failed. The PIN was not printed.
var ErrMailerUnavailable = errors.New("PIN mailer printer unavailable")

// GeneratePINRequest asks the security module for a new random PIN for a card,
// enciphered for its issuer.
type GeneratePINRequest struct {
	PAN string
	// Length is the number of digits, MinPINLength–MaxPINLength; 0 means
	// DefaultGeneratedPINLength.
	Length int
	// To is the issuer's zone PIN key, ToFormat the issuer's PIN block format.
	To       KeyRef
	ToFormat Format
}

// GeneratedPIN is a generated PIN as it leaves the module: enciphered twice,
// never in clear. The caller owns both slices and should clear them after use.
type GeneratedPIN struct {
	// Block is the PIN under GeneratePINRequest.To in GeneratePINRequest.ToFormat,
	// for the issuer.
	Block []byte
	// Sealed is the PIN under a key that only this module instance holds (the
	// payShield "PIN under LMK"). It is opaque: only PrintMailer of the same
	// module can use it, and only for the same PAN.
	Sealed []byte
}

// MailerRequest asks the module to print the PIN mailer of a generated PIN.
type MailerRequest struct {
	PAN    string
	Sealed []byte // GeneratedPIN.Sealed
	// Reference identifies the mailer (the operation id); it names the spool
	// file, so it is limited to letters, digits and '-' (at most 64).
	Reference string
	// AddressLines are printed above the PIN: the branch where the
	// cardholder collects the mailer. Control characters are replaced by
	// spaces.
	AddressLines []string
}

// MailerContent is everything on a PIN mailer except the PIN. It holds no
// secret: the PAN is already masked (first 6, last 4).
type MailerContent struct {
	Reference    string
	MaskedPAN    string
	AddressLines []string
	Issued       time.Time
}

// MailerPrinter renders PIN mailers: the only place a generated PIN exists in
// clear outside the security module. PrintMailer must not log, keep or copy
// pin beyond the rendered mailer; pin is zeroized after PrintMailer returns,
// and its digits are reachable only through SecretPIN.Reveal (or, inside this
// package, without a string copy). A hardware module prints on its attached
// printer instead (payShield PE) and needs no MailerPrinter.
type MailerPrinter interface {
	PrintMailer(ctx context.Context, m MailerContent, pin *SecretPIN) error
}

// moduleMailing is a module's mailer state: its printer and its seal key.
type moduleMailing struct {
	printer atomic.Pointer[MailerPrinter]
	seal    sealKey
}

func (m *SoftwareModule) mailing() *moduleMailing { return &m.mail }

// SetMailerPrinter installs the printer PrintMailer renders through; nil
// removes it. It is safe to call at any time.
func (m *SoftwareModule) SetMailerPrinter(p MailerPrinter) {
	if p == nil {
		m.mailing().printer.Store(nil)
		return
	}
	m.mailing().printer.Store(&p)
}

// sealKey is the module instance's own key for sealed PINs, made on first use
// from crypto/rand (never from the module's test reader: a predictable seal
// key would make sealed PINs readable). It dies with the process, so a sealed
// PIN cannot outlive the module that made it.
type sealKey struct {
	once sync.Once
	key  Key
	err  error
}

func (s *sealKey) get() (Key, error) {
	s.once.Do(func() {
		raw := make([]byte, 16)
		defer clear(raw)
		if err := readFill(nil, raw); err != nil {
			s.err = err
			return
		}
		s.key, s.err = NewKey("pin-seal", UsageZPK, AES, 1, raw)
	})
	return s.key, s.err
}

// GeneratePIN draws a random PIN of req.Length decimal digits, uniformly,
// until one passes the module's PINPolicy (ErrNewPINRejected after
// maxPINDraws refused draws), and returns it enciphered under req.To in
// req.ToFormat and sealed for PrintMailer. The clear PIN lives only in this
// call's buffers, which are cleared (best-effort) before it returns.
//
// Errors: ErrInvalidPIN for a length outside 4–12, ErrInvalidPAN,
// ErrUnknownKey, ErrKeyUsage (req.To is not a PIN key),
// ErrKeyAlgorithmMismatch, ErrForbiddenTranslation (format 2),
// ErrUnsupportedFormat, ErrNewPINRejected, and ctx.Err().
//
// On a payShield this is JA (generate a random PIN, under the LMK) then JG
// (translate it from the LMK to the ZPK); Sealed is JA's PIN under LMK.
func (m *SoftwareModule) GeneratePIN(ctx context.Context, req GeneratePINRequest) (GeneratedPIN, error) {
	if err := ctx.Err(); err != nil {
		return GeneratedPIN{}, err
	}
	n := req.Length
	if n == 0 {
		n = DefaultGeneratedPINLength
	}
	if n < MinPINLength || n > MaxPINLength {
		return GeneratedPIN{}, fmt.Errorf("%w: generated PIN length must be %d to %d", ErrInvalidPIN, MinPINLength, MaxPINLength)
	}
	if err := checkPAN(req.PAN); err != nil {
		return GeneratedPIN{}, err
	}
	to, err := m.encipherKey(req.To)
	if err != nil {
		return GeneratedPIN{}, err
	}
	toCipher, err := checkKeyFor(req.ToFormat, to)
	if err != nil {
		return GeneratedPIN{}, err
	}
	seal, err := m.mailing().seal.get()
	if err != nil {
		return GeneratedPIN{}, err
	}
	sealCipher, err := seal.blockCipher()
	if err != nil {
		return GeneratedPIN{}, err
	}

	var pin SecretPIN
	defer pin.Zeroize()
	if err := m.drawPIN(&pin, n, req.PAN); err != nil {
		return GeneratedPIN{}, err
	}
	out := GeneratedPIN{Block: make([]byte, req.ToFormat.BlockSize()), Sealed: make([]byte, Format4.BlockSize())}
	if err := encipher(out.Block, req.ToFormat, &pin, req.PAN, toCipher, m.rnd); err != nil {
		return GeneratedPIN{}, err
	}
	if err := encipher(out.Sealed, Format4, &pin, req.PAN, sealCipher, m.rnd); err != nil {
		return GeneratedPIN{}, err
	}
	return out, nil
}

// drawPIN fills pin with n uniform random digits that the policy accepts.
// Digits come from random bytes below 250 (250 = 25 × 10), so no digit is
// more likely than another.
func (m *SoftwareModule) drawPIN(pin *SecretPIN, n int, pan string) error {
	var buf [32]byte
	defer clear(buf[:])
	for range maxPINDraws {
		got := 0
		for got < n {
			if err := readFill(m.rnd, buf[:]); err != nil {
				return err
			}
			for _, b := range buf {
				if b < 250 && got < n {
					pin.d[got] = '0' + b%10
					got++
				}
			}
		}
		pin.n = uint8(n)
		if !m.policy.weak(pin.digits(), pan) {
			return nil
		}
	}
	return ErrNewPINRejected
}

// PrintMailer unseals req.Sealed (made by GeneratePIN of this module for
// req.PAN) and renders the mailer through the installed MailerPrinter. The
// clear PIN exists only for the printer call and is zeroized after it.
//
// Errors: ErrMailerUnavailable (no printer, or the printer failed: nothing
// is printed or the printer removed what it had written), ErrInvalidPINBlock
// (Sealed was not made by this module for this PAN), ErrInvalidPAN, and
// ctx.Err().
//
// On a payShield this is PE (print a PIN mailer from the PIN under LMK).
func (m *SoftwareModule) PrintMailer(ctx context.Context, req MailerRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pp := m.mailing().printer.Load()
	if pp == nil {
		return fmt.Errorf("%w: no printer configured", ErrMailerUnavailable)
	}
	if !validReference(req.Reference) {
		return fmt.Errorf("%w: mailer reference must be 1 to 64 letters, digits or '-'", ErrMailerUnavailable)
	}
	if err := checkPAN(req.PAN); err != nil {
		return err
	}
	seal, err := m.mailing().seal.get()
	if err != nil {
		return err
	}
	b, err := seal.blockCipher()
	if err != nil {
		return err
	}
	var pin SecretPIN
	defer pin.Zeroize()
	if err := decipher(Format4, req.Sealed, req.PAN, b, &pin); err != nil {
		return ErrInvalidPINBlock
	}
	content := MailerContent{
		Reference:    req.Reference,
		MaskedPAN:    maskPAN(req.PAN),
		AddressLines: cleanLines(req.AddressLines),
		Issued:       m.now().UTC(),
	}
	if err := (*pp).PrintMailer(ctx, content, &pin); err != nil {
		return fmt.Errorf("%w: %v", ErrMailerUnavailable, err)
	}
	return nil
}

// validReference: 1–64 letters, digits or '-', safe as a file name.
func validReference(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// maskPAN keeps the first 6 and last 4 digits (PCI DSS 3.4); a PAN of 10
// digits or fewer is masked whole.
func maskPAN(pan string) string {
	if len(pan) <= 10 {
		b := make([]byte, len(pan))
		for i := range b {
			b[i] = '*'
		}
		return string(b)
	}
	b := []byte(pan)
	for i := 6; i < len(b)-4; i++ {
		b[i] = '*'
	}
	return string(b)
}

func cleanLines(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		b := []byte(s)
		for j, c := range b {
			if c < 0x20 || c == 0x7f {
				b[j] = ' '
			}
		}
		out[i] = string(b)
	}
	return out
}
