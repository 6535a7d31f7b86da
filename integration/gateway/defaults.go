package gateway

import (
	"time"

	"pingate/integration/issuersim"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// Identities of the embedded default.
const (
	DevInstitution    = "999001" // pingate
	DevATMAcquirer    = "100001" // an ATM network
	DevBranchAcquirer = "200001" // a bank's branch front end
	DevSM4Acquirer    = "100003" // an ATM network with SM4 PIN pads
	DevIssuer         = "ssbank" // the simulated card issuer
	devIssuerInst     = "300001"
	DevSM4Issuer      = "sm4bank" // the simulated issuer's SM4 host: the same simulator, its SM4 zone key
	devSM4IssuerInst  = "300003"
)

// DevSM4Prefix is the card range the embedded default routes to the SM4
// issuer: cards 5000–5999 of the simulator's BIN 621700 (the longest
// prefix wins), so that the rest of the range, and every test that uses
// the first cards of each BIN, stays with the AES issuer.
const DevSM4Prefix = "621700000005"

// devBINs are the simulated issuer's card ranges.
var devBINs = []string{"62284812", "62284813", "621700"}

// DevBINs returns the card ranges of the embedded default's simulated issuer.
func DevBINs() []string { return append([]string(nil), devBINs...) }

// EmbeddedConfig is what `pingate serve` runs with no config file: safe for
// a laptop — loopback only, the published development keys, an in-process
// issuer simulator as the only route (its SM4 host sm4bank takes the card
// range DevSM4Prefix), per-instance limits, and a local
// journal. It is refused under --production.
func EmbeddedConfig() Config {
	routes := make([]routing.Route, 0, len(devBINs))
	for _, b := range devBINs {
		routes = append(routes, routing.Route{Prefix: b, Issuer: DevIssuer})
	}
	routes = append(routes, routing.Route{Prefix: DevSM4Prefix, Issuer: DevSM4Issuer})
	return Config{
		Instance: "local",
		Acquirer: ListenConfig{Addr: "127.0.0.1:8583"},
		HTTP:     HTTPConfig{Addr: "127.0.0.1:8080"},
		Security: SecurityConfig{DevKeys: true},
		Routing: routing.Config{
			Institution: DevInstitution,
			Acquirers: []routing.AcquirerConfig{
				{ID: DevATMAcquirer, Name: "development ATM network", Channel: routing.ChannelATM, Terminals: []string{"*"},
					Keys: map[int]string{1: devkeys.ATMZPK}, ZMK: devkeys.ATMZMK, Formats: []int{0, 3}},
				{ID: DevBranchAcquirer, Name: "development branch front end", Channel: routing.ChannelBranch, Terminals: []string{"*"},
					Keys: map[int]string{1: devkeys.BranchZPK}, Formats: []int{4}},
				{ID: DevSM4Acquirer, Name: "development SM4 ATM network", Channel: routing.ChannelATM, Terminals: []string{"*"},
					Keys: map[int]string{1: devkeys.SM4ATMZPK}, ZMK: devkeys.SM4ATMZMK, Formats: []int{0, 4},
					PINAlgorithm: pinblock.SM4},
			},
			Issuers: []routing.IssuerConfig{
				{ID: DevIssuer, Institution: devIssuerInst, Hosts: []string{"issuer-sim"},
					PINFormat: 4, Key: devkeys.IssuerZPK, KeyIndex: 1},
				{ID: DevSM4Issuer, Institution: devSM4IssuerInst, Hosts: []string{"issuer-sim"},
					PINFormat: 4, PINAlgorithm: pinblock.SM4, Key: devkeys.SM4IssuerZPK, KeyIndex: issuersim.DevSM4KeyIndex},
			},
			Routes: routes,
		},
		Limits:    LimitsConfig{Backend: "memory"},
		Events:    EventsConfig{JournalDir: "var/journal"},
		Reversals: ReversalsConfig{Dir: "var/reversals"},
		IssuerSim: &IssuerSimConfig{Addr: "127.0.0.1:0", Seed: 1, BINs: devBINs, PerBIN: 10000},
	}
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Instance == "" {
		c.Instance = "pingate"
	}
	if c.Acquirer.Addr == "" {
		c.Acquirer.Addr = "127.0.0.1:8583"
	}
	if c.Acquirer.Framing == "" {
		c.Acquirer.Framing = "binary2"
	}
	if c.Acquirer.ShutdownGrace == 0 {
		c.Acquirer.ShutdownGrace = 15 * time.Second
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8080"
	}
	if c.Security.KeySyncInterval == 0 {
		c.Security.KeySyncInterval = time.Second
	}
	if c.Security.RotationGrace == 0 {
		c.Security.RotationGrace = 24 * time.Hour
	}
	if c.Events.JournalDir == "" {
		c.Events.JournalDir = "var/journal"
	}
	if c.Events.KafkaTopic == "" {
		c.Events.KafkaTopic = "pingate.pin-outcomes.v1"
	}
	if c.Reversals.Dir == "" {
		c.Reversals.Dir = "var/reversals"
	}
	if c.Limits.Backend == "" {
		c.Limits.Backend = "memory"
	}
	if c.IssuerSim != nil {
		s := *c.IssuerSim
		if s.Addr == "" {
			s.Addr = "127.0.0.1:0"
		}
		if s.PerBIN == 0 {
			s.PerBIN = 10000
		}
		if len(s.BINs) == 0 {
			s.BINs = devBINs
		}
		c.IssuerSim = &s
	}
	// Issuers and acquirers are shared slices: copy before anyone rewrites hosts.
	c.Routing.Issuers = append([]routing.IssuerConfig(nil), c.Routing.Issuers...)
	for i := range c.Routing.Issuers {
		c.Routing.Issuers[i].Hosts = append([]string(nil), c.Routing.Issuers[i].Hosts...)
	}
	return c
}
