package issuersim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Population is the simulator's deterministic card population: from a seed,
// anyone (the load tool, the demo, tests) can list the valid cards and their
// initial PINs without asking the simulator.
//
// A card's PAN is a BIN, then its index zero-padded to fill the PAN up to
// Length-1 digits, then the Luhn check digit. Card i of BIN b exists when
// i < PerBIN. Its initial PIN is four digits derived from HMAC-SHA-256(seed,
// PAN), never a run of one digit or a plain sequence.
type Population struct {
	Seed   int64    // derives every initial PIN
	BINs   []string // 6–11 digit card ranges the issuer owns
	PerBIN int      // cards per BIN
	Length int      // PAN length, 13–19 (default 16)
}

// Cards with special answers, by their index within their BIN: every
// thousandth card from 998 on answers 96 (a simulated issuer malfunction) and
// from 999 on 57 (an account restricted by the issuer). Tools that want
// approvals skip them with Usable.
const (
	faultyEvery = 1000
	faultyAt    = 998
	restrictAt  = 999
)

// Usable reports whether card i answers normally.
func (p Population) Usable(i int) bool {
	k := (i / len(p.BINs)) % faultyEvery
	return k != faultyAt && k != restrictAt
}

// special returns the fixed answer of a special card, or "".
func (p Population) special(pan string) string {
	if !p.Contains(pan) {
		return ""
	}
	for _, b := range p.BINs {
		if len(pan) > len(b) && pan[:len(b)] == b {
			idx, err := strconv.Atoi(pan[len(b) : len(pan)-1])
			if err != nil {
				return ""
			}
			switch idx % faultyEvery {
			case faultyAt:
				return "96"
			case restrictAt:
				return "57"
			}
		}
	}
	return ""
}

// Card is one simulated card with its initial PIN. Test tooling only: a real
// issuer never holds a clear PIN.
type Card struct {
	PAN string
	PIN string
}

// Validate names bad settings.
func (p Population) Validate() error {
	var errs []error
	if len(p.BINs) == 0 {
		errs = append(errs, errors.New("issuersim: no BINs"))
	}
	n := p.length()
	for _, b := range p.BINs {
		if len(b) < 6 || len(b) > 11 || !digits(b) {
			errs = append(errs, fmt.Errorf("issuersim: BIN %q: want 6–11 digits", b))
			continue
		}
		room := n - 1 - len(b)
		if room < 1 || room < len(strconv.Itoa(max(p.PerBIN-1, 0))) {
			errs = append(errs, fmt.Errorf("issuersim: BIN %s leaves no room for %d cards in %d-digit PANs", b, p.PerBIN, n))
		}
	}
	if p.PerBIN <= 0 {
		errs = append(errs, fmt.Errorf("issuersim: per_bin %d: want > 0", p.PerBIN))
	}
	if n < 13 || n > 19 {
		errs = append(errs, fmt.Errorf("issuersim: pan length %d: want 13–19", n))
	}
	return errors.Join(errs...)
}

func (p Population) length() int {
	if p.Length == 0 {
		return 16
	}
	return p.Length
}

// Size is the number of cards.
func (p Population) Size() int { return len(p.BINs) * p.PerBIN }

// Card returns card i of the population (0 ≤ i < Size), BINs interleaved so
// that consecutive indexes spread across BINs.
func (p Population) Card(i int) Card {
	bin := p.BINs[i%len(p.BINs)]
	idx := i / len(p.BINs)
	var b [19]byte // Validate keeps PANs within 19 digits
	n := copy(b[:], bin)
	for i := p.length() - 2; i >= n; i-- {
		b[i] = byte('0' + idx%10)
		idx /= 10
	}
	body := b[:p.length()-1]
	b[len(body)] = byte('0' + LuhnDigit(string(body)))
	pan := string(b[:len(body)+1])
	return Card{PAN: pan, PIN: p.InitialPIN(pan)}
}

// Contains reports whether pan is a card of the population.
func (p Population) Contains(pan string) bool {
	if len(pan) != p.length() || !digits(pan) || LuhnDigit(pan[:len(pan)-1]) != int(pan[len(pan)-1]-'0') {
		return false
	}
	for _, b := range p.BINs {
		if len(pan) > len(b) && pan[:len(b)] == b {
			idx, err := strconv.Atoi(pan[len(b) : len(pan)-1])
			return err == nil && idx < p.PerBIN
		}
	}
	return false
}

// InitialPIN is the PIN a card of the population starts with.
func (p Population) InitialPIN(pan string) string {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], uint64(p.Seed))
	m := hmac.New(sha256.New, seed[:])
	m.Write([]byte(pan))
	var buf [sha256.Size]byte
	sum := m.Sum(buf[:0])
	for i := 0; i+4 <= len(sum); i += 2 {
		v := binary.BigEndian.Uint32(sum[i:i+4]) % 10000
		pin := [4]byte{byte('0' + v/1000), byte('0' + v/100%10), byte('0' + v/10%10), byte('0' + v%10)}
		if !plainPattern(pin[:]) {
			return string(pin[:])
		}
	}
	return "5821"
}

// plainPattern: one digit repeated or a step-by-one sequence either way.
func plainPattern[S ~string | ~[]byte](pin S) bool {
	same, up, down := true, true, true
	for i := 1; i < len(pin); i++ {
		d := int(pin[i]) - int(pin[i-1])
		same = same && d == 0
		up = up && (d == 1 || d == -9)
		down = down && (d == -1 || d == 9)
	}
	return same || up || down
}

// LuhnDigit is the check digit that makes body+digit pass the Luhn check
// (ISO/IEC 7812-1 Annex B).
func LuhnDigit(body string) int {
	sum := 0
	double := true
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
