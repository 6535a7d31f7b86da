package pinblock

import "fmt"

// PINPolicy is the exclusion list a new PIN is checked against when a PIN
// change or reset asks for it (PairRequest.CheckNewPIN). A refused PIN is
// ErrNewPINRejected, and nothing in the error says which rule refused it.
// The zero PINPolicy refuses nothing; start from DefaultPINPolicy.
type PINPolicy struct {
	// RejectRepeated refuses PINs of one repeated digit: 0000, 1111, 999999.
	RejectRepeated bool `yaml:"reject_repeated" json:"reject_repeated"`
	// RejectSequences refuses PINs whose digits each go up by one or each go
	// down by one, wrapping between 9 and 0: 1234, 6789, 7890, 9876, 3210.
	RejectSequences bool `yaml:"reject_sequences" json:"reject_sequences"`
	// RejectPANDigits refuses a PIN that equals any run of consecutive digits
	// of the card's PAN (the last four, the first four, ...).
	RejectPANDigits bool `yaml:"reject_pan_digits" json:"reject_pan_digits"`
	// RejectUnchanged refuses, in a PIN change, a new PIN equal to the old one.
	RejectUnchanged bool `yaml:"reject_unchanged" json:"reject_unchanged"`
	// Excluded are further refused PINs, 4–12 digits each (dates, keypad
	// patterns).
	Excluded []string `yaml:"excluded" json:"excluded"`
}

// DefaultExcludedPINs are common PINs that are neither repeated digits nor
// straight sequences: keypad columns and patterns, doubled pairs, well-known
// years and numbers.
var DefaultExcludedPINs = []string{
	"1212", "2121", "1122", "2211", "1313", "1010", "2000", "2001", "1004", "6969",
	"2580", "0852", "1470", "0741", "3690", "0963", "1357", "2468", "1590", "7531",
	"1100", "1984", "1999", "2020", "5683", "1379", "1236", "2552", "0101", "0007",
}

// DefaultPINPolicy refuses repeated digits, sequences, DefaultExcludedPINs, PAN
// digits and an unchanged PIN.
func DefaultPINPolicy() PINPolicy {
	return PINPolicy{
		RejectRepeated:  true,
		RejectSequences: true,
		RejectPANDigits: true,
		RejectUnchanged: true,
		Excluded:        append([]string(nil), DefaultExcludedPINs...),
	}
}

// Validate checks that every Excluded entry is 4–12 decimal digits; the error
// names the entry's index (the list is configuration, not a cardholder's PIN).
func (p PINPolicy) Validate() error {
	for i, s := range p.Excluded {
		if _, err := NewSecretPIN(s); err != nil {
			return fmt.Errorf("pin policy: excluded[%d]: must be %d to %d decimal digits", i, MinPINLength, MaxPINLength)
		}
	}
	return nil
}

// Check returns ErrNewPINRejected if pin is refused by p; pan is the card's
// PAN, used only by RejectPANDigits. The error never describes the PIN.
func (p *PINPolicy) Check(pin SecretPIN, pan string) error {
	defer pin.Zeroize()
	if p.weak(pin.digits(), pan) {
		return ErrNewPINRejected
	}
	return nil
}

// weak reports whether the ASCII digits d are refused.
func (p *PINPolicy) weak(d []byte, pan string) bool {
	if len(d) == 0 {
		return true
	}
	if p.RejectRepeated {
		same := true
		for _, c := range d[1:] {
			same = same && c == d[0]
		}
		if same {
			return true
		}
	}
	if p.RejectSequences {
		up, down := true, true
		for i := 1; i < len(d); i++ {
			step := (int(d[i]) - int(d[i-1]) + 10) % 10
			up = up && step == 1
			down = down && step == 9
		}
		if up || down {
			return true
		}
	}
	if p.RejectPANDigits {
		// No string(d): a string copy of the PIN could not be cleared.
		for i := 0; i+len(d) <= len(pan); i++ {
			if pan[i:i+len(d)] == string(d) {
				return true
			}
		}
	}
	for _, s := range p.Excluded {
		if s == string(d) {
			return true
		}
	}
	return false
}
