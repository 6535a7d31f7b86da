package routing

import (
	"strings"
	"testing"

	"pingate/pinblock"
)

func sm4TestConfig() Config {
	return Config{
		Institution: "999001",
		Acquirers: []AcquirerConfig{{ID: "100003", Terminals: []string{"*"}, Keys: map[int]string{1: "a"},
			PINAlgorithm: pinblock.SM4}},
		Issuers: []IssuerConfig{{ID: "sm4bank", Institution: "300003", Hosts: []string{"127.0.0.1:1"},
			PINFormat: 4, PINAlgorithm: pinblock.SM4, Key: "i"}},
		Routes: []Route{{Prefix: "621700", Issuer: "sm4bank"}},
	}
}

// TestSM4ConfigValidate: pin_algorithm sm4 takes formats 0 and 4 only, and
// no other cipher name is accepted; the message names the value.
func TestSM4ConfigValidate(t *testing.T) {
	if err := sm4TestConfig().WithDefaults().Validate(); err != nil {
		t.Fatalf("Validate(SM4 acquirer and issuer) = %v", err)
	}
	if got := sm4TestConfig().WithDefaults().Acquirers[0].Formats; len(got) != 2 || got[0] != 0 || got[1] != 4 {
		t.Errorf("default formats of an SM4 acquirer = %v, want [0 4]", got)
	}
	tests := []struct {
		name string
		give func(*Config)
		want string
	}{
		{"SM4 acquirer with format 3", func(c *Config) { c.Acquirers[0].Formats = []int{0, 3} }, "formats: 3 has no SM4 form"},
		{"unknown acquirer cipher", func(c *Config) { c.Acquirers[0].PINAlgorithm = "sm9" }, `pin_algorithm "sm9"`},
		{"SM4 issuer with format 3", func(c *Config) { c.Issuers[0].PINFormat = 3 }, "SM4 issuers take 0 (SM4-0) or 4 (SM4-4)"},
		{"unknown issuer cipher", func(c *Config) { c.Issuers[0].PINAlgorithm = "des" }, `pin_algorithm "des"`},
	}
	for _, tt := range tests {
		c := sm4TestConfig()
		tt.give(&c)
		err := c.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want it to say %q", tt.name, err, tt.want)
		}
	}
}

func TestSM4BlockFormat(t *testing.T) {
	tests := []struct {
		n    int
		alg  pinblock.Algorithm
		want pinblock.Format
	}{
		{0, "", pinblock.Format0}, {4, "", pinblock.Format4}, {1, "", pinblock.Format1},
		{0, pinblock.SM4, pinblock.Format0SM4}, {4, pinblock.SM4, pinblock.Format4SM4},
		{3, pinblock.SM4, pinblock.Format3}, // no SM4 form: left for the format list to refuse
	}
	for _, tt := range tests {
		if got := blockFormat(tt.n, tt.alg); got != tt.want {
			t.Errorf("blockFormat(%d, %q) = %v, want %v", tt.n, tt.alg, got, tt.want)
		}
	}
}
