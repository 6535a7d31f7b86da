package routing

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"pingate/iso8583"
	"pingate/pinblock"
)

// AcquirerConfig describes one institution allowed to send PIN operations:
// an ATM network, a switch, or a bank's branch front end.
type AcquirerConfig struct {
	// ID is the acquiring institution id the acquirer sends in DE 32.
	ID string `yaml:"id" json:"id"`
	// Name is for people.
	Name string `yaml:"name" json:"name"`
	// Channel is where its requests come from: atm, branch or kiosk.
	Channel Channel `yaml:"channel" json:"channel"`
	// Terminals lists the terminal ids (DE 41) it may send from; "*" allows any.
	Terminals []string `yaml:"terminals" json:"terminals"`
	// Keys maps the key index of DE 53 to the label of the acquirer's zone PIN
	// key in the security module.
	Keys map[int]string `yaml:"keys" json:"keys"`
	// ZMK is the label of the zone master key shared with the acquirer: a key
	// change (0800, NMI 161) brings a new zone PIN key enciphered under it.
	ZMK string `yaml:"zmk" json:"zmk"`
	// RequireSignOn refuses PIN operations (0100) and key changes on a
	// connection that has not signed on (0800/001) or has signed off
	// (0800/002), with response code 91. Echo tests and reversal advices
	// (0420) are taken either way. Off by default; serve --production warns
	// about an acquirer without it.
	RequireSignOn bool `yaml:"require_sign_on" json:"require_sign_on"`
	// LegacyKeyChange also accepts, in a key change, the new zone PIN key
	// enciphered under the ZMK with TDES-ECB (or AES Key Wrap) and its KCV
	// (DE 123 "key/KCV"), which PCI PIN 18-3 no longer allows: without it
	// only a TR-31 key block is accepted. For a migration only; serve
	// --production warns about an acquirer with it. An acquirer with
	// PINAlgorithm sm4 sends its key SM4-ECB under its SM4 ZMK with
	// this switch off: no key block format exists for SM4.
	LegacyKeyChange bool `yaml:"key_change_legacy_ecb" json:"key_change_legacy_ecb"`
	// Formats lists the ISO 9564 PIN block formats it may send (default 0, 3,
	// 4; with PINAlgorithm sm4, 0 and 4).
	Formats []int `yaml:"formats" json:"formats"`
	// PINAlgorithm is the cipher of its PIN blocks and zone keys: "" (TDES
	// for formats 0, 1, 3 and AES for 4) or "sm4" (GB/T 32907-2016): DE 53
	// format 0 then means the 128-bit SM4-0 block and 4 the SM4-4 block,
	// both 16 bytes in DE 52 and DE 125 (docs/design.md, "SM4"). A key change
	// for an SM4 acquirer carries the new key under its SM4 ZMK in SM4-ECB
	// with its 8-byte check value (DE 123 "key/KCV"), the one form an SM4
	// key has: ANSI X9.143 defines no SM4 key block.
	PINAlgorithm pinblock.Algorithm `yaml:"pin_algorithm" json:"pin_algorithm"`
	// Operations it may ask for (default: change for ATMs; all three for
	// branches and kiosks).
	Operations []Operation `yaml:"operations" json:"operations"`
}

// IssuerConfig describes one card-issuing host.
type IssuerConfig struct {
	// ID names the issuer in routes, events and metrics.
	ID string `yaml:"id" json:"id"`
	// Institution is the issuer's institution id, sent in DE 100.
	Institution string `yaml:"institution" json:"institution"`
	// Hosts are the issuer's host addresses, tried in order (failover).
	Hosts []string `yaml:"hosts" json:"hosts"`
	// Framing of the link: "binary2" (default) or "ascii4".
	Framing string `yaml:"framing" json:"framing"`
	// Dialect names the ISO 8583 dialect the issuer speaks: a built-in one
	// ("issuer", the default: binary/BCD; "acquirer": ASCII) or one loaded
	// from a spec file listed under the configuration's dialects
	// (docs/iso8583-issuer.md, "Dialect spec files").
	Dialect string `yaml:"dialect" json:"dialect"`
	// PINFormat is the ISO 9564 format the issuer expects (0, 3 or 4; with
	// PINAlgorithm sm4, 0 or 4).
	PINFormat int `yaml:"pin_format" json:"pin_format"`
	// PINAlgorithm is the cipher of the issuer's PIN blocks and zone key: ""
	// (TDES for formats 0 and 3, AES for 4) or "sm4" (SM4-0 or SM4-4, see
	// AcquirerConfig.PINAlgorithm).
	PINAlgorithm pinblock.Algorithm `yaml:"pin_algorithm" json:"pin_algorithm"`
	// Key is the label of the zone PIN key shared with the issuer.
	Key string `yaml:"key" json:"key"`
	// KeyIndex is the issuer-side key index sent in DE 53.
	KeyIndex int `yaml:"key_index" json:"key_index"`
	// Timeout is the per-request deadline at the issuer (default 5s).
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// EchoInterval: an idle link sends an 0800 echo this often (default 30s).
	EchoInterval time.Duration `yaml:"echo_interval" json:"echo_interval"`
	// Connections per host (default 1).
	Connections int `yaml:"connections" json:"connections"`
}

// Config is the routing part of pingate's configuration.
type Config struct {
	// Institution is pingate's own institution id, sent as DE 32 to issuers.
	Institution string           `yaml:"institution" json:"institution"`
	Acquirers   []AcquirerConfig `yaml:"acquirers" json:"acquirers"`
	Issuers     []IssuerConfig   `yaml:"issuers" json:"issuers"`
	Routes      []Route          `yaml:"routes" json:"routes"`
	// DuplicateWindow is how long a request's outcome is kept to answer a
	// duplicate of it (same acquirer, terminal, STAN and transmission time).
	DuplicateWindow time.Duration `yaml:"duplicate_window" json:"duplicate_window"`
	// RequestTimeout bounds a whole request inside pingate (default 10s).
	RequestTimeout time.Duration `yaml:"request_timeout" json:"request_timeout"`
}

// Defaults used when a field is zero.
const (
	DefaultIssuerTimeout   = 5 * time.Second
	DefaultEchoInterval    = 30 * time.Second
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultRequestTimeout  = 10 * time.Second
)

// WithDefaults returns a copy with zero fields filled in.
func (c Config) WithDefaults() Config {
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	c.Acquirers = slices.Clone(c.Acquirers)
	for i := range c.Acquirers {
		a := &c.Acquirers[i]
		if a.Channel == "" {
			a.Channel = ChannelATM
		}
		if len(a.Formats) == 0 {
			a.Formats = []int{0, 3, 4}
			if a.PINAlgorithm == pinblock.SM4 {
				a.Formats = []int{0, 4}
			}
		}
		if len(a.Operations) == 0 {
			if a.Channel == ChannelATM {
				a.Operations = []Operation{OpChange}
			} else {
				a.Operations = []Operation{OpChange, OpReset, OpUnblock}
			}
		}
	}
	c.Issuers = slices.Clone(c.Issuers)
	for i := range c.Issuers {
		is := &c.Issuers[i]
		if is.Timeout == 0 {
			is.Timeout = DefaultIssuerTimeout
		}
		if is.EchoInterval == 0 {
			is.EchoInterval = DefaultEchoInterval
		}
		if is.Connections == 0 {
			is.Connections = 1
		}
		if is.Framing == "" {
			is.Framing = "binary2"
		}
		if is.Dialect == "" {
			is.Dialect = iso8583.DefaultIssuerDialect
		}
	}
	return c
}

// Validate names every problem it finds, not only the first.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !isDigits(c.Institution) || len(c.Institution) > 11 {
		bad("routing.institution %q: want 1–11 digits", c.Institution)
	}
	seenAcq := map[string]bool{}
	for i, a := range c.Acquirers {
		where := fmt.Sprintf("routing.acquirers[%d] (%s)", i, a.ID)
		if !isDigits(a.ID) || len(a.ID) > 11 {
			bad("%s: id %q: want 1–11 digits (DE 32)", where, a.ID)
		}
		if seenAcq[a.ID] {
			bad("%s: id listed twice", where)
		}
		seenAcq[a.ID] = true
		switch a.Channel {
		case "", ChannelATM, ChannelBranch, ChannelKiosk:
		default:
			bad("%s: channel %q: want atm, branch or kiosk", where, a.Channel)
		}
		if len(a.Terminals) == 0 {
			bad("%s: terminals: list at least one terminal id or \"*\"", where)
		}
		if len(a.Keys) == 0 {
			bad("%s: keys: map at least one key index to a key label", where)
		}
		for idx, label := range a.Keys {
			if idx < 0 || idx > 99 || label == "" {
				bad("%s: keys[%d]=%q: want index 0–99 and a key label", where, idx, label)
			}
		}
		switch a.PINAlgorithm {
		case "":
			for _, f := range a.Formats {
				if f != 0 && f != 1 && f != 3 && f != 4 {
					bad("%s: formats: %d is not an interchange PIN block format (0, 1, 3, 4)", where, f)
				}
			}
		case pinblock.SM4:
			for _, f := range a.Formats {
				if f != 0 && f != 4 {
					bad("%s: formats: %d has no SM4 form (pin_algorithm sm4 takes 0 and 4)", where, f)
				}
			}
		default:
			bad("%s: pin_algorithm %q: want empty (TDES/AES by format) or sm4", where, a.PINAlgorithm)
		}
		for _, op := range a.Operations {
			if op != OpChange && op != OpReset && op != OpUnblock {
				bad("%s: operations: unknown operation %q", where, op)
			}
		}
	}
	seenIss := map[string]bool{}
	for i, is := range c.Issuers {
		where := fmt.Sprintf("routing.issuers[%d] (%s)", i, is.ID)
		if is.ID == "" {
			bad("%s: empty id", where)
		}
		if seenIss[is.ID] {
			bad("%s: id listed twice", where)
		}
		seenIss[is.ID] = true
		if !isDigits(is.Institution) || len(is.Institution) > 11 {
			bad("%s: institution %q: want 1–11 digits (DE 100)", where, is.Institution)
		}
		if len(is.Hosts) == 0 {
			bad("%s: hosts: list at least one host:port", where)
		}
		switch is.PINAlgorithm {
		case "":
			if is.PINFormat != 0 && is.PINFormat != 3 && is.PINFormat != 4 {
				bad("%s: pin_format %d: issuers take 0, 3 or 4", where, is.PINFormat)
			}
		case pinblock.SM4:
			if is.PINFormat != 0 && is.PINFormat != 4 {
				bad("%s: pin_format %d: SM4 issuers take 0 (SM4-0) or 4 (SM4-4)", where, is.PINFormat)
			}
		default:
			bad("%s: pin_algorithm %q: want empty (TDES/AES by format) or sm4", where, is.PINAlgorithm)
		}
		if is.Key == "" {
			bad("%s: key: name the zone PIN key label", where)
		}
		if is.Framing != "" && is.Framing != "binary2" && is.Framing != "ascii4" {
			bad("%s: framing %q: want binary2 or ascii4", where, is.Framing)
		}
		if is.Timeout < 0 || is.EchoInterval < 0 || is.Connections < 0 {
			bad("%s: timeout, echo_interval and connections must not be negative", where)
		}
	}
	if _, err := NewBINTable(c.Routes); err != nil {
		bad("routing.routes: %v", err)
	}
	for i, r := range c.Routes {
		if !seenIss[r.Issuer] {
			bad("routing.routes[%d] (prefix %s): unknown issuer %q", i, r.Prefix, r.Issuer)
		}
	}
	if c.DuplicateWindow < 0 || c.RequestTimeout < 0 {
		bad("routing: duplicate_window and request_timeout must not be negative")
	}
	return errors.Join(errs...)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	_, ok := digitsValue(s)
	return ok
}
