package routing

import (
	"strings"
	"testing"
	"time"
)

// TestConfigValidateNamesTheProblem: each invalid setting is refused with
// a message naming where it is and what is wrong; every problem is listed,
// not only the first.
func TestConfigValidateNamesTheProblem(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"institution not digits", func(c *Config) { c.Institution = "ABC" }, `routing.institution "ABC"`},
		{"acquirer id not digits", func(c *Config) { c.Acquirers[0].ID = "atm" }, `id "atm": want 1–11 digits`},
		{"acquirer twice", func(c *Config) { c.Acquirers[1].ID = c.Acquirers[0].ID }, "routing.acquirers[1] (100001): id listed twice"},
		{"unknown channel", func(c *Config) { c.Acquirers[0].Channel = "fax" }, `channel "fax"`},
		{"no terminals", func(c *Config) { c.Acquirers[0].Terminals = nil }, "terminals: list at least one"},
		{"no keys", func(c *Config) { c.Acquirers[0].Keys = nil }, "keys: map at least one"},
		{"key index out of range", func(c *Config) { c.Acquirers[0].Keys = map[int]string{100: "k"} }, "keys[100]"},
		{"format 2", func(c *Config) { c.Acquirers[0].Formats = []int{2} }, "formats: 2 is not an interchange PIN block format"},
		{"unknown cipher", func(c *Config) { c.Acquirers[0].PINAlgorithm = "des" }, `pin_algorithm "des"`},
		{"unknown operation", func(c *Config) { c.Acquirers[0].Operations = []Operation{"renew"} }, `unknown operation "renew"`},
		{"issuer without id", func(c *Config) { c.Issuers[0].ID = ""; c.Routes = nil }, "routing.issuers[0] (): empty id"},
		{"issuer twice", func(c *Config) { c.Issuers = append(c.Issuers, c.Issuers[0]) }, "routing.issuers[1] (ssbank): id listed twice"},
		{"issuer institution", func(c *Config) { c.Issuers[0].Institution = "" }, `institution "": want 1–11 digits (DE 100)`},
		{"no hosts", func(c *Config) { c.Issuers[0].Hosts = nil }, "hosts: list at least one"},
		{"issuer format 1", func(c *Config) { c.Issuers[0].PINFormat = 1 }, "pin_format 1: issuers take 0, 3 or 4"},
		{"issuer SM4 format 3", func(c *Config) { c.Issuers[0].PINAlgorithm = "sm4"; c.Issuers[0].PINFormat = 3 }, "pin_format 3: SM4 issuers"},
		{"issuer unknown cipher", func(c *Config) { c.Issuers[0].PINAlgorithm = "rc4" }, `pin_algorithm "rc4"`},
		{"no issuer key", func(c *Config) { c.Issuers[0].Key = "" }, "key: name the zone PIN key label"},
		{"framing", func(c *Config) { c.Issuers[0].Framing = "ascii2" }, `framing "ascii2"`},
		{"negative timeout", func(c *Config) { c.Issuers[0].Timeout = -time.Second }, "must not be negative"},
		{"bad route prefix", func(c *Config) { c.Routes[0].Prefix = "62x" }, `prefix "62x" must be 1–19 digits`},
		{"route to no issuer", func(c *Config) { c.Routes[0].Issuer = "nobank" }, `unknown issuer "nobank"`},
		{"negative window", func(c *Config) { c.DuplicateWindow = -time.Minute }, "duplicate_window and request_timeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	c := testConfig()
	c.Institution, c.Issuers[0].Hosts = "", nil
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "routing.institution") || !strings.Contains(err.Error(), "hosts") {
		t.Errorf("Validate() with two problems = %v, want both named", err)
	}
	if err := testConfig().WithDefaults().Validate(); err != nil {
		t.Errorf("Validate(test config) = %v", err)
	}
}

// TestConfigWithDefaults: zero fields take the documented defaults, and
// the copy does not share the caller's slices.
func TestConfigWithDefaults(t *testing.T) {
	c := testConfig()
	c.Acquirers[1].Operations = nil
	d := c.WithDefaults()
	is := d.Issuers[0]
	if is.Timeout != DefaultIssuerTimeout || is.EchoInterval != DefaultEchoInterval || is.Connections != 1 || is.Framing != "binary2" {
		t.Errorf("issuer defaults = timeout %v, echo %v, connections %d, framing %q", is.Timeout, is.EchoInterval, is.Connections, is.Framing)
	}
	if d.DuplicateWindow != DefaultDuplicateWindow || d.RequestTimeout != DefaultRequestTimeout {
		t.Errorf("windows = %v, %v, want the defaults", d.DuplicateWindow, d.RequestTimeout)
	}
	if got := d.Acquirers[0].Operations; len(got) != 1 || got[0] != OpChange {
		t.Errorf("ATM operations = %v, want [change]", got)
	}
	if got := d.Acquirers[1].Operations; len(got) != 3 {
		t.Errorf("branch operations = %v, want all three", got)
	}
	if got := d.Acquirers[0].Formats; len(got) != 3 {
		t.Errorf("default formats = %v, want [0 3 4]", got)
	}
	d.Issuers[0].ID = "changed"
	if c.Issuers[0].ID != "ssbank" {
		t.Error("WithDefaults shares the issuers slice with its receiver")
	}
}
