package gateway

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"gopkg.in/yaml.v3"

	"pingate/integration/logredact"
	"pingate/integration/outbox"
	"pingate/integration/redislimit"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/routing"
)

// Config is pingate's whole configuration, read from YAML. Every secret is a
// reference (a file path or an environment variable name), never a value.
// docs/configuration.md documents each key.
type Config struct {
	// Instance names this gateway in events (CloudEvents source) and logs.
	Instance string `yaml:"instance"`
	// Production refuses the published development keys and the in-process
	// issuer simulator, and requires security.module payshield.
	Production bool           `yaml:"production"`
	Acquirer   ListenConfig   `yaml:"acquirer_listener"`
	HTTP       HTTPConfig     `yaml:"http"`
	Admin      AdminConfig    `yaml:"admin"`
	Security   SecurityConfig `yaml:"security"`
	Routing    routing.Config `yaml:"routing"`
	// Dialects are the ISO 8583 dialects of issuers loaded from spec files,
	// by name: an issuer's routing dialect names one of them or a built-in
	// one ("issuer", "acquirer"). A path is relative to the working
	// directory; the files are read at start-up (a change needs a restart).
	Dialects  map[string]string `yaml:"dialects"`
	Limits    LimitsConfig      `yaml:"limits"`
	Events    EventsConfig      `yaml:"events"`
	Reversals ReversalsConfig   `yaml:"reversals"`
	Telemetry TelemetryConfig   `yaml:"telemetry"`
	Branch    BranchConfig      `yaml:"branch"`
	Log       LogConfig         `yaml:"log"`
	// IssuerSim runs an issuer simulator inside the gateway process: the
	// embedded default's issuer. Refused under production.
	IssuerSim *IssuerSimConfig `yaml:"issuer_sim"`
}

// ListenConfig is the ISO 8583 acquirer listener.
type ListenConfig struct {
	Addr          string        `yaml:"addr"`           // default 127.0.0.1:8583
	Framing       string        `yaml:"framing"`        // binary2 (default) or ascii4
	MaxFrame      int           `yaml:"max_frame"`      // bytes, default 8192
	ReadTimeout   time.Duration `yaml:"read_timeout"`   // a started frame must complete within this (default 10s)
	IdleTimeout   time.Duration `yaml:"idle_timeout"`   // an idle connection is closed after this (default 5m)
	MaxConns      int           `yaml:"max_conns"`      // default 1024
	MaxInFlight   int           `yaml:"max_in_flight"`  // per connection, default 64
	ShutdownGrace time.Duration `yaml:"shutdown_grace"` // in-flight requests get this long on SIGTERM (default 15s)
}

// HTTPConfig is the HTTP port: health, metrics, admin.
type HTTPConfig struct {
	Addr string `yaml:"addr"` // default 127.0.0.1:8080
}

// AdminConfig is the admin HTTP listener of `pingate serve` (POST
// /admin/reload, GET /admin/keys). It has no authentication: keep it on
// loopback (admin.go).
type AdminConfig struct {
	Addr     string `yaml:"addr"`     // default 127.0.0.1:8081
	Disabled bool   `yaml:"disabled"` // no admin listener (SIGHUP still reloads)
}

// SecurityConfig is the security module and its keys.
type SecurityConfig struct {
	// Module is the security module: "software" (default; keys in this
	// process, development and test) or "payshield" (Thales payShield HSMs
	// in security.payshield; no clear key or PIN in this process).
	Module    string          `yaml:"module"`
	PayShield PayShieldConfig `yaml:"payshield"`
	// DevKeys loads the published development key set (docs/dev-keys.md).
	// Refused under production.
	DevKeys bool `yaml:"dev_keys"`
	// KeyStore is the key store file (keys enciphered under the LMK).
	KeyStore string `yaml:"key_store"`
	// LMKFile / LMKEnv name where the local master key is: never the key itself.
	LMKFile string `yaml:"lmk_file"`
	LMKEnv  string `yaml:"lmk_env"`
	// CustodyLog is the tamper-evident custody log file.
	CustodyLog string `yaml:"custody_log"`
	// RotationGrace: after a rotation the previous key version still
	// deciphers for this long (default 24h).
	RotationGrace time.Duration `yaml:"rotation_grace"`
	// KeySyncInterval: with limits.backend redis, how often this instance
	// takes the online key changes (0800/161) other instances took
	// (default 1s): a key change is in force on every instance within it.
	KeySyncInterval time.Duration `yaml:"key_sync_interval"`
	// CardTokenKeyFile / CardTokenKeyEnv name the HMAC key of card tokens
	// (hex, at least 32 bytes). The embedded default uses a development key.
	CardTokenKeyFile string `yaml:"card_token_key_file"`
	CardTokenKeyEnv  string `yaml:"card_token_key_env"`
	// WeakPINs refuses new PINs on the exclusion list (default true).
	WeakPINs *bool `yaml:"weak_pins"`
}

// LimitsConfig selects the limiter: "memory" (redislimit.Memory, in this
// process, per instance: the embedded default) or "redis" (shared by every
// instance).
// The limit settings themselves are redislimit.Config's, inline.
type LimitsConfig struct {
	Backend           string `yaml:"backend"` // memory (default) or redis
	redislimit.Config `yaml:",inline"`
}

// EventsConfig is the outcome journal and its relay to Kafka.
type EventsConfig struct {
	JournalDir   string   `yaml:"journal_dir"`   // default ./var/journal
	MaxDepth     int      `yaml:"max_depth"`     // past it requests are answered 91
	KafkaBrokers []string `yaml:"kafka_brokers"` // empty: journal only
	KafkaTopic   string   `yaml:"kafka_topic"`   // default pingate.pin-outcomes.v1
	// KafkaTopicPartitions, when > 0, has pingate create the topic at start
	// if it does not exist (with KafkaTopicReplication, default 1). Zero:
	// the topic is created by the operators (the production norm).
	KafkaTopicPartitions  int `yaml:"kafka_topic_partitions"`
	KafkaTopicReplication int `yaml:"kafka_topic_replication"`
	// KafkaTopicMinInSync is the min.insync.replicas of a topic pingate
	// creates; 0: the brokers' default. The relay writes with acks from
	// all in-sync replicas, so with replication 3 and 2 here an
	// acknowledged event is on two brokers at least (docs/operations.md).
	KafkaTopicMinInSync int           `yaml:"kafka_topic_min_insync_replicas"`
	WriteTimeout        time.Duration `yaml:"write_timeout"`
	// RelayLinger is how long the relay lets events gather before a batch
	// to Kafka that is not full (outbox.RelayConfig.Linger): default 10ms,
	// at most 100ms, negative off. Answers never wait for it.
	RelayLinger time.Duration `yaml:"relay_linger"`
	// MinFree is the journal disk's free-space reserve in bytes: below it
	// new requests are answered 91 journal_full before the issuer is
	// called, while decided outcomes are still written. Default 64 MiB
	// (outbox.DefaultMinFree); -1 turns the check off.
	MinFree int64 `yaml:"min_free"`
	// JournalWriteTimeout bounds one journal write; past it the request is
	// answered 91 and reversed, and the journal refuses work until the
	// write returns. Default 2s.
	JournalWriteTimeout time.Duration `yaml:"journal_write_timeout"`
	// JournalSyncInterval is the least time between two fsyncs of the
	// journal (outbox.Config.SyncInterval): default 1ms, at most 10ms,
	// negative off.
	JournalSyncInterval time.Duration `yaml:"journal_sync_interval"`
	// JournalFS, for tests only (no YAML key reaches it), replaces the disk
	// under the journal: pebble's vfs/errorfs injects faults through it.
	JournalFS vfs.FS `yaml:"-" json:"-"`
}

// ReversalsConfig is where owed reversal advices persist.
type ReversalsConfig struct {
	Dir string `yaml:"dir"` // default ./var/reversals
	// WriteTimeout bounds one reversal-store write; a write owed ahead of
	// the issuer call that fails or takes longer answers 91
	// reversal_store_unavailable without calling the issuer. Default 2s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// DataKey is the id of a key held by the security module (not a PIN
	// key) from which the module derives the data key that seals every
	// stored advice (they carry PANs; PCI DSS 3.5). Default with dev_keys:
	// dev-atm-zmk, which protects nothing; required otherwise.
	DataKey string `yaml:"data_key"`
}

// TelemetryConfig turns on OTLP trace export; metrics are always served in
// Prometheus format at /metrics on the HTTP port.
type TelemetryConfig struct {
	OTLPEndpoint string `yaml:"otlp_endpoint"` // host:port of an OTLP/HTTP collector; empty = off
	// SampleRatio is the share of new traces recorded, 0–1 (telemetry.Config):
	// default 1 with an OTLP endpoint, 0 without one (ids only, no span data).
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// LogConfig is the structured log: format and level (logredact.New).
type LogConfig = logredact.Config

// IssuerSimConfig runs an in-process issuer simulator.
type IssuerSimConfig struct {
	Addr     string        `yaml:"addr"` // default 127.0.0.1:0
	Seed     int64         `yaml:"seed"`
	BINs     []string      `yaml:"bins"`
	PerBIN   int           `yaml:"per_bin"`
	Latency  time.Duration `yaml:"latency"`
	FailRate float64       `yaml:"fail_rate"`
	// ZPK is the development key id of the simulator's zone PIN key
	// (default the AES issuer ZPK; the TDES ATM ZPK for security.module
	// payshield, whose variant LMK holds no AES keys).
	ZPK string `yaml:"zpk"`
}

// LoadConfig reads a YAML file strictly: an unknown key is an error, so a typo
// cannot silently leave a default in force.
func LoadConfig(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ProductionWarnings lists what a production gateway runs with although
// it should not, each line naming the setting: serve logs them as warnings
// under production (they are allowed, for a migration, but not safe).
func (c Config) ProductionWarnings() []string {
	if !c.Production {
		return nil
	}
	var w []string
	for i, a := range c.Routing.Acquirers {
		where := fmt.Sprintf("routing.acquirers[%d] (%s)", i, a.ID)
		if !a.RequireSignOn {
			w = append(w, where+".require_sign_on is off: PIN operations are served on a connection that never signed on")
		}
		if a.LegacyKeyChange {
			w = append(w, where+".key_change_legacy_ecb is on: key changes may deliver a ZPK without a key block (PCI PIN 18-3)")
		}
	}
	return w
}

// Validate names every problem in c.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Production {
		if c.Security.DevKeys {
			bad("security.dev_keys: the published development keys are refused under production")
		}
		if c.IssuerSim != nil {
			bad("issuer_sim: the in-process issuer simulator is refused under production")
		}
		if c.Security.CardTokenKeyFile == "" && c.Security.CardTokenKeyEnv == "" {
			bad("security: production needs card_token_key_file or card_token_key_env")
		}
		if c.Security.Module != "payshield" {
			m := c.Security.Module
			if m == "" {
				m = "software"
			}
			bad("security.module %s: production requires payshield (PCI PIN allows a clear PIN only inside an approved HSM; docs/hsm.md)", m)
		}
	}
	if !c.Security.DevKeys && c.Security.KeyStore == "" && c.Security.Module != "payshield" {
		bad("security: set dev_keys or key_store")
	}
	c.Security.validatePayShield(bad)
	if c.Security.Module == "payshield" && c.Reversals.DataKey != "" {
		bad("reversals.data_key %q: with security.module payshield the module's keys stay in the HSM; leave it empty (the reversal store's data key then derives from the card-token key, docs/hsm.md)", c.Reversals.DataKey)
	}
	if c.Security.KeySyncInterval < 0 {
		bad("security.key_sync_interval %s: want a positive duration", c.Security.KeySyncInterval)
	}
	if c.Security.KeyStore != "" && c.Security.LMKFile == "" && c.Security.LMKEnv == "" {
		bad("security: key_store needs lmk_file or lmk_env (a reference, never the key)")
	}
	switch c.Acquirer.Framing {
	case "", "binary2", "ascii4":
	default:
		bad("acquirer_listener.framing %q: want binary2 or ascii4", c.Acquirer.Framing)
	}
	if c.Acquirer.MaxFrame < 0 || c.Acquirer.MaxFrame > 65535 {
		bad("acquirer_listener.max_frame %d: want 0–65535", c.Acquirer.MaxFrame)
	}
	switch c.Limits.Backend {
	case "", "memory":
	case "redis":
		if err := c.Limits.Config.WithDefaults().Validate(); err != nil {
			bad("limits: %v", err)
		}
	default:
		bad("limits.backend %q: want memory or redis", c.Limits.Backend)
	}
	if ev := c.Events; ev.KafkaTopicMinInSync < 0 || ev.KafkaTopicMinInSync > max(ev.KafkaTopicReplication, 1) {
		bad("events.kafka_topic_min_insync_replicas %d: must be in 0..kafka_topic_replication (%d)", ev.KafkaTopicMinInSync, max(ev.KafkaTopicReplication, 1))
	}
	if c.Events.MaxDepth < 0 {
		bad("events.max_depth %d: must not be negative", c.Events.MaxDepth)
	}
	if c.Events.JournalSyncInterval > outbox.MaxSyncInterval {
		bad("events.journal_sync_interval %v: must be at most %v", c.Events.JournalSyncInterval, outbox.MaxSyncInterval)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		bad("log.format %q: want json or text", c.Log.Format)
	}
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	if err := c.Routing.WithDefaults().Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateDialects())
	if c.branchEnabled() {
		tls := c.Branch.TLS
		switch {
		case tls.CertFile != "" || tls.KeyFile != "" || tls.ClientCAFile != "":
			if err := c.Branch.Config.Validate(); err != nil {
				bad("branch: %v", err)
			}
		case !c.Security.DevKeys || c.Production:
			bad("branch.tls: cert_file, key_file and client_ca_file are required outside a development setup")
		}
	}
	return errors.Join(errs...)
}

// LoadDialects reads the spec file of every dialect c names (Dialects) into
// a registry that also holds the built-in ones. The error names every file
// and field at fault.
func (c Config) LoadDialects() (*iso8583.Registry, error) {
	r := iso8583.NewRegistry()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Dialects)) {
		if err := r.Load(name, c.Dialects[name]); err != nil {
			errs = append(errs, fmt.Errorf("dialects.%s (%s): %w", name, c.Dialects[name], err))
		}
	}
	return r, errors.Join(errs...)
}

// validateDialects loads the dialect spec files and checks that every
// issuer names a known dialect that holds its PIN blocks.
func (c Config) validateDialects() error {
	r, err := c.LoadDialects()
	if err != nil {
		return err
	}
	var errs []error
	for i, is := range c.Routing.WithDefaults().Issuers {
		where := fmt.Sprintf("routing.issuers[%d] (%s)", i, is.ID)
		d, err := r.Lookup(is.Dialect)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: dialect: %w", where, err))
			continue
		}
		if (is.PINFormat == 4 || is.PINAlgorithm == pinblock.SM4) && !d.Takes16BytePINBlocks() {
			errs = append(errs, fmt.Errorf("%s: dialect %s holds only 8-byte PIN blocks in DE 52 and DE 125; pin_format %d (pin_algorithm %q) needs 16", where, is.Dialect, is.PINFormat, is.PINAlgorithm))
		}
	}
	return errors.Join(errs...)
}
