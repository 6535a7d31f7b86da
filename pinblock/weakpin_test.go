package pinblock

import (
	"errors"
	"testing"
)

func TestPINPolicyRejects(t *testing.T) {
	p := DefaultPINPolicy()
	const pan = "4929123456785512"
	tests := []struct {
		name string
		give string
	}{
		{"repeated", "0000"},
		{"repeated long", "777777"},
		{"ascending", "1234"},
		{"ascending wrap", "7890"},
		{"ascending 6", "345678"},
		{"descending", "9876"},
		{"descending wrap", "2109"},
		{"listed keypad column", "2580"},
		{"listed", "1212"},
		{"listed", "1004"},
		{"listed", "6969"},
		{"PAN last four", "5512"},
		{"PAN first four", "4929"},
		{"PAN middle", "234567"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Check(mustPIN(t, tt.give), pan); !errors.Is(err, ErrNewPINRejected) {
				t.Errorf("Check(%s example) = %v, want %v", tt.name, err, ErrNewPINRejected)
			}
		})
	}
}

func TestPINPolicyAccepts(t *testing.T) {
	p := DefaultPINPolicy()
	const pan = "4929123456785512"
	for _, give := range []string{"1357924", "8142", "0192", "13579", "5830", "123456789013"} {
		if err := p.Check(mustPIN(t, give), pan); err != nil {
			t.Errorf("Check(acceptable PIN of %d digits) = %v, want nil", len(give), err)
		}
	}
	// Each rule can be switched off.
	var none PINPolicy
	for _, give := range []string{"0000", "1234", "2580", "5512"} {
		if err := none.Check(mustPIN(t, give), pan); err != nil {
			t.Errorf("zero PINPolicy refused a PIN: %v", err)
		}
	}
}

func TestPINPolicyValidate(t *testing.T) {
	if err := DefaultPINPolicy().Validate(); err != nil {
		t.Errorf("DefaultPINPolicy().Validate() = %v", err)
	}
	for _, bad := range [][]string{{"123"}, {"1234", "12a4"}, {"1234567890123"}} {
		p := PINPolicy{Excluded: bad}
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%d entries with a bad one) = nil, want an error", len(bad))
		}
	}
}
