package issuersim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"

	"pingate/iso8583"
)

func testPopulation() Population {
	return Population{Seed: 42, BINs: []string{"62284812", "621700"}, PerBIN: 1000}
}

func TestPopulationCards(t *testing.T) {
	p := testPopulation()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < p.Size(); i++ {
		c := p.Card(i)
		if !p.Contains(c.PAN) {
			t.Fatalf("Card(%d) not in population", i)
		}
		if seen[c.PAN] {
			t.Fatalf("Card(%d) repeats a PAN", i)
		}
		seen[c.PAN] = true
		if len(c.PIN) != 4 || plainPattern(c.PIN) {
			t.Fatalf("Card(%d) has an unusable initial PIN", i)
		}
	}
	// The layout and the PIN derivation as documented on Population, built
	// here the slow way.
	for i := range 50 {
		bin := p.BINs[i%len(p.BINs)]
		body := bin + fmt.Sprintf("%0*d", 15-len(bin), i/len(p.BINs))
		pan := body + strconv.Itoa(LuhnDigit(body))
		var seed [8]byte
		binary.BigEndian.PutUint64(seed[:], uint64(p.Seed))
		m := hmac.New(sha256.New, seed[:])
		m.Write([]byte(pan))
		sum, pin := m.Sum(nil), "5821"
		for j := 0; j+4 <= len(sum); j += 2 {
			if s := fmt.Sprintf("%04d", binary.BigEndian.Uint32(sum[j:j+4])%10000); !plainPattern(s) {
				pin = s
				break
			}
		}
		if got := p.Card(i); got.PAN != pan || got.PIN != pin {
			t.Fatalf("Card(%d) is not BIN + zero-padded index + Luhn digit with its documented initial PIN", i)
		}
	}
	usable := 0
	for i := 0; i < p.Size(); i++ {
		if p.Usable(i) {
			usable++
		} else if p.special(p.Card(i).PAN) == "" {
			t.Fatalf("card %d is not Usable but has no special answer", i)
		}
	}
	if want := p.Size() - 2*len(p.BINs); usable != want {
		t.Errorf("%d usable cards, want %d", usable, want)
	}
	// Luhn: the check digit of a published test PAN (4111 1111 1111 1111).
	if got := LuhnDigit("411111111111111"); got != 1 {
		t.Errorf("LuhnDigit(4111…111) = %d, want 1", got)
	}
	other := Population{Seed: 43, BINs: p.BINs, PerBIN: p.PerBIN}
	same := 0
	for i := 0; i < 100; i++ {
		if other.Card(i).PIN == p.Card(i).PIN {
			same++
		}
	}
	if same > 10 {
		t.Errorf("%d of 100 PINs equal under another seed; the seed is not used", same)
	}
	for _, pan := range []string{"6228481200010000", "6228481200000000", "5555555555554444"} {
		if p.Contains(pan) {
			t.Errorf("Contains(%s…) = true, want false", pan[:6])
		}
	}
}

func TestLedger(t *testing.T) {
	p := testPopulation()
	l := newLedger(p, hmacPVD([]byte("pvk-for-tests-only-0123456789abc")), 3)
	card := p.Card(7)
	steps := []struct {
		name string
		do   func() string
		want string
	}{
		{"change with right PIN", func() string { return l.change(card.PAN, card.PIN, "4826", "r1") }, iso8583.RCApproved},
		{"old PIN no longer works", func() string { return l.change(card.PAN, card.PIN, "4827", "r2") }, iso8583.RCIncorrectPIN},
		{"second wrong PIN", func() string { return l.change(card.PAN, "0000", "4827", "r3") }, iso8583.RCIncorrectPIN},
		{"third wrong PIN locks", func() string { return l.change(card.PAN, "0001", "4827", "r4") }, iso8583.RCPINTriesExceeded},
		{"locked even with right PIN", func() string { return l.change(card.PAN, "4826", "4827", "r5") }, iso8583.RCPINTriesExceeded},
		{"unblock", func() string { return l.unblock(card.PAN) }, iso8583.RCApproved},
		{"right PIN works after unblock", func() string { return l.change(card.PAN, "4826", "3917", "r6") }, iso8583.RCApproved},
		{"reset", func() string { return l.reset(card.PAN, "7305", "r7") }, iso8583.RCApproved},
		{"reset PIN works", func() string { return l.change(card.PAN, "7305", "8162", "r8") }, iso8583.RCApproved},
		{"unknown card", func() string { return l.change("5555555555554444", "1234", "4826", "r9") }, iso8583.RCNoSuchCard},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
	}
	if !l.reverse(card.PAN, "r8") {
		t.Fatal("reverse(r8) = false, want true")
	}
	if got := l.change(card.PAN, "7305", "8162", "r10"); got != iso8583.RCApproved {
		t.Fatalf("after reversal the reset PIN should verify again: got %s", got)
	}
	if l.reverse(card.PAN, "r8") {
		t.Fatal("reverse of a change that was not the last one succeeded")
	}
}

// TestLedgerUntouchedCards: a card the ledger has not seen yet, or has seen
// but never changed, is verified against the population's initial PIN; a
// wrong PIN counts on it; a reversal of its first change brings the initial
// PIN back; a reset replaces the initial PIN.
func TestLedgerUntouchedCards(t *testing.T) {
	p := testPopulation()
	l := newLedger(p, hmacPVD([]byte("pvk-for-tests-only-0123456789abc")), 3)
	a, b := p.Card(11), p.Card(12)
	wrong := "4826"
	if a.PIN == wrong {
		wrong = "4827"
	}
	steps := []struct {
		name string
		do   func() string
		want string
	}{
		{"unblock of a card never seen", func() string { return l.unblock(a.PAN) }, iso8583.RCApproved},
		{"wrong PIN on a card never changed", func() string { return l.change(a.PAN, wrong, "3917", "a1") }, iso8583.RCIncorrectPIN},
		{"second wrong PIN", func() string { return l.change(a.PAN, wrong, "3917", "a2") }, iso8583.RCIncorrectPIN},
		{"third wrong PIN locks", func() string { return l.change(a.PAN, wrong, "3917", "a3") }, iso8583.RCPINTriesExceeded},
		{"locked with the initial PIN", func() string { return l.change(a.PAN, a.PIN, "3917", "a4") }, iso8583.RCPINTriesExceeded},
		{"unblock", func() string { return l.unblock(a.PAN) }, iso8583.RCApproved},
		{"initial PIN after unblock", func() string { return l.change(a.PAN, a.PIN, "3917", "a5") }, iso8583.RCApproved},
		{"new PIN works", func() string { return l.change(a.PAN, "3917", "7305", "a6") }, iso8583.RCApproved},
		{"reset of a card never seen", func() string { return l.reset(b.PAN, "8162", "b1") }, iso8583.RCApproved},
		{"initial PIN gone after the reset", func() string { return l.change(b.PAN, b.PIN, "3917", "b2") }, iso8583.RCIncorrectPIN},
		{"reset PIN works", func() string { return l.change(b.PAN, "8162", "3917", "b3") }, iso8583.RCApproved},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
	}
	c := p.Card(13)
	if got := l.change(c.PAN, c.PIN, "3917", "c1"); got != iso8583.RCApproved {
		t.Fatalf("first change of card 13: got %s, want 00", got)
	}
	if !l.reverse(c.PAN, "c1") {
		t.Fatal("reverse(c1) = false, want true")
	}
	if got := l.change(c.PAN, "3917", "7305", "c2"); got != iso8583.RCIncorrectPIN {
		t.Fatalf("reversed PIN still verifies: got %s, want 55", got)
	}
	if got := l.change(c.PAN, c.PIN, "7305", "c3"); got != iso8583.RCApproved {
		t.Fatalf("initial PIN after the reversal of the first change: got %s, want 00", got)
	}
}

func hmacPVD(key []byte) func(pan, pin string) [32]byte {
	return func(pan, pin string) [32]byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(pan + "|" + pin))
		var out [32]byte
		copy(out[:], m.Sum(nil))
		return out
	}
}
