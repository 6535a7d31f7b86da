package pinblock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SpoolPrinter is the software MailerPrinter: it writes each mailer as its own
// file, <reference>.mailer, in a spool directory, readable and writable by the
// owner only (0600; the directory is 0700), for a print service to pick up.
// It never overwrites a mailer: a second mailer with the same reference is an
// error.
//
// The file is plain text, lines separated by "\n", in this layout, which is
// the contract print services parse (docs/branch-api.md repeats it):
//
//	PIN MAILER
//	Reference: <reference>
//	Issued: <RFC 3339 UTC time>
//	Card: <masked PAN, first 6 and last 4 digits>
//
//	<address line 1>
//	<address line 2>
//	...
//
//	Your new PIN: <PIN digits>
//
//	Memorise your PIN, then destroy this mailer.
//	Never write your PIN down or tell it to anyone, bank staff included.
//
// The PIN is on its own line after "Your new PIN: ". Nothing else in the file
// is secret.
type SpoolPrinter struct {
	dir string
}

var _ MailerPrinter = (*SpoolPrinter)(nil)

// MailerFileSuffix ends the name of every spool file.
const MailerFileSuffix = ".mailer"

// NewSpoolPrinter creates dir (0700) if needed and returns a printer into it.
func NewSpoolPrinter(dir string) (*SpoolPrinter, error) {
	if dir == "" {
		return nil, errors.New("pin mailer spool: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pin mailer spool: %w", err)
	}
	return &SpoolPrinter{dir: dir}, nil
}

// Dir is the spool directory.
func (p *SpoolPrinter) Dir() string { return p.dir }

// PrintMailer writes the mailer file and syncs it. On any error nothing is
// left behind. The rendering buffer is cleared (best-effort) before return.
func (p *SpoolPrinter) PrintMailer(ctx context.Context, m MailerContent, pin *SecretPIN) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !validReference(m.Reference) {
		return errors.New("pin mailer spool: invalid reference")
	}
	if pin == nil || pin.Len() == 0 {
		return errors.New("pin mailer spool: no PIN")
	}
	var buf bytes.Buffer
	buf.Grow(512)
	renderMailer(&buf, m, pin)
	defer clear(buf.Bytes()[:buf.Cap()])

	path := filepath.Join(p.dir, m.Reference+MailerFileSuffix)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("pin mailer spool: %w", err)
	}
	_, werr := f.Write(buf.Bytes())
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return fmt.Errorf("pin mailer spool: %w", werr)
	}
	return nil
}

// renderMailer writes the SpoolPrinter layout; the PIN digits go straight
// from pin into buf, with no string copy.
func renderMailer(buf *bytes.Buffer, m MailerContent, pin *SecretPIN) {
	buf.WriteString("PIN MAILER\n")
	buf.WriteString("Reference: " + m.Reference + "\n")
	buf.WriteString("Issued: " + m.Issued.UTC().Format(time.RFC3339) + "\n")
	buf.WriteString("Card: " + m.MaskedPAN + "\n\n")
	for _, l := range m.AddressLines {
		buf.WriteString(l + "\n")
	}
	buf.WriteString("\nYour new PIN: ")
	buf.Write(pin.digits())
	buf.WriteString("\n\nMemorise your PIN, then destroy this mailer.\n")
	buf.WriteString("Never write your PIN down or tell it to anyone, bank staff included.\n")
}
