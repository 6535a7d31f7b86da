package gateway

import (
	"strings"
	"testing"
)

// TestRestartNeededDialects: the spec files are read at start-up only, so a
// reload that changes dialects or an issuer's dialect is refused as needing
// a restart, and so is one that changes the security module or its HSMs
// (docs/configuration.md marks them restart); an unchanged one passes.
func TestRestartNeeded(t *testing.T) {
	cur := EmbeddedConfig().WithDefaults()
	cur.Dialects = map[string]string{"example-bank": "/etc/pingate/example-bank.yaml"}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"dialects path", func(c *Config) { c.Dialects = map[string]string{"example-bank": "/etc/pingate/other.yaml"} }, "dialects"},
		{"dialects dropped", func(c *Config) { c.Dialects = nil }, "dialects"},
		{"issuer dialect", func(c *Config) { c.Routing.Issuers[0].Dialect = "example-bank" }, "routing.issuers"},
		{"security module", func(c *Config) { c.Security.Module = "payshield" }, "security.module"},
		{"payShield hosts", func(c *Config) { c.Security.PayShield.Hosts = []string{"10.0.0.9:1500"} }, "security.payshield"},
		{"payShield key-block LMK", func(c *Config) { c.Security.PayShield.KeyBlockLMK = true }, "security.payshield"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := EmbeddedConfig().WithDefaults()
			next.Dialects = map[string]string{"example-bank": "/etc/pingate/example-bank.yaml"}
			next.Routing.Issuers = append(next.Routing.Issuers[:0:0], next.Routing.Issuers...)
			tt.change(&next)
			err := restartNeeded(cur, next)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("restartNeeded() = %v, want a restart naming %s", err, tt.want)
			}
		})
	}
	same := EmbeddedConfig().WithDefaults()
	same.Dialects = map[string]string{"example-bank": "/etc/pingate/example-bank.yaml"}
	if err := restartNeeded(cur, same); err != nil {
		t.Errorf("restartNeeded(unchanged) = %v, want nil", err)
	}
}
