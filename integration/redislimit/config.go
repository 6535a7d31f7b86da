package redislimit

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Mode is how the limiter reaches Redis.
type Mode string

// Modes.
const (
	ModeStandalone Mode = "standalone" // one server (or a proxy in front of several)
	ModeSentinel   Mode = "sentinel"   // a primary found through Redis Sentinel
	ModeCluster    Mode = "cluster"    // Redis Cluster
)

// Defaults applied by New (and shown by Config.WithDefaults) for zero fields.
const (
	DefaultMode                = ModeStandalone
	DefaultDialTimeout         = 250 * time.Millisecond
	DefaultReadTimeout         = 100 * time.Millisecond
	DefaultKeyPrefix           = "pg"
	DefaultDayZone             = "UTC"
	DefaultCardOpsPerDay       = 10
	DefaultCardWrongPINPerHour = 3
	DefaultTerminalRPS         = 1.0
	DefaultTerminalBurst       = 5
	DefaultAcquirerRPS         = 200.0
	DefaultAcquirerBurst       = 400
	DefaultReplicaAckTimeout   = 50 * time.Millisecond
)

// Config configures a Limiter. Zero fields take the Default* values. It holds
// no secret: the Redis password is named by PasswordEnv and read from the
// environment by New.
type Config struct {
	// Mode is standalone, sentinel or cluster.
	Mode Mode `yaml:"mode"`
	// Addrs are host:port addresses: the one server (standalone), the
	// sentinels (sentinel) or seed nodes (cluster). Required.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master group name; required in sentinel
	// mode, unused otherwise.
	MasterName string `yaml:"master_name"`
	// Username is the Redis ACL user; empty for the default user.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the Redis password.
	// Empty means no password. New fails if it is named but unset.
	PasswordEnv string `yaml:"password_env"`
	// DB is the database number; must be 0 in cluster mode.
	DB int `yaml:"db"`
	// DialTimeout bounds connecting to Redis (default 250ms).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds each read and write on a Redis connection (default
	// 100ms). The request's context deadline applies as well.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// KeyPrefix starts every key (default "pg"); it must not contain '{' or '}'.
	KeyPrefix string `yaml:"key_prefix"`
	// ReplicaAcks is how many replicas must have a request's card count and
	// duplicate-window claim before it may proceed (Redis WAIT, in the same
	// round trip; on Redis Cluster on the card's master). 0, the default,
	// does not wait: Redis replicates asynchronously, so a master's crash
	// may forget the last writes. A request whose writes fewer replicas
	// acknowledged within ReplicaAckTimeout is refused (fail closed).
	ReplicaAcks int `yaml:"replica_acks"`
	// ReplicaAckTimeout bounds that wait (default 50ms).
	ReplicaAckTimeout time.Duration `yaml:"replica_ack_timeout"`
	// DayZone is the IANA time zone whose calendar day CardOpsPerDay counts
	// (default "UTC").
	DayZone string `yaml:"day_zone"`

	// CardOpsPerDay is how many operations one card may make per day across
	// all channels (default 10).
	CardOpsPerDay int `yaml:"card_ops_per_day"`
	// CardWrongPINPerHour is how many incorrect-PIN results (code 55) a card
	// may collect in the last hour, across all channels, before PIN changes
	// are refused (default 3).
	CardWrongPINPerHour int `yaml:"card_wrong_pin_per_hour"`
	// TerminalRPS and TerminalBurst limit one terminal's requests: a sustained
	// rate per second and how many may arrive at once (defaults 1 and 5).
	TerminalRPS   float64 `yaml:"terminal_rps"`
	TerminalBurst int     `yaml:"terminal_burst"`
	// AcquirerRPS and AcquirerBurst limit one acquirer's requests, all its
	// terminals together (defaults 200 and 400).
	AcquirerRPS   float64 `yaml:"acquirer_rps"`
	AcquirerBurst int     `yaml:"acquirer_burst"`
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.ReplicaAckTimeout == 0 {
		c.ReplicaAckTimeout = DefaultReplicaAckTimeout
	}
	if c.DayZone == "" {
		c.DayZone = DefaultDayZone
	}
	if c.CardOpsPerDay == 0 {
		c.CardOpsPerDay = DefaultCardOpsPerDay
	}
	if c.CardWrongPINPerHour == 0 {
		c.CardWrongPINPerHour = DefaultCardWrongPINPerHour
	}
	if c.TerminalRPS == 0 {
		c.TerminalRPS = DefaultTerminalRPS
	}
	if c.TerminalBurst == 0 {
		c.TerminalBurst = DefaultTerminalBurst
	}
	if c.AcquirerRPS == 0 {
		c.AcquirerRPS = DefaultAcquirerRPS
	}
	if c.AcquirerBurst == 0 {
		c.AcquirerBurst = DefaultAcquirerBurst
	}
	return c
}

// Validate reports every invalid field of c (after defaults), each named
// with its value, joined into one error. It does not contact Redis or read
// the password variable.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch c.Mode {
	case ModeStandalone, ModeSentinel, ModeCluster:
	default:
		bad("mode %q: want standalone, sentinel or cluster", c.Mode)
	}
	if len(c.Addrs) == 0 {
		bad("addrs: at least one host:port required")
	}
	for _, a := range c.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			bad("addrs: %q is not host:port", a)
		}
	}
	if c.Mode == ModeStandalone && len(c.Addrs) > 1 {
		bad("addrs: %d addresses in standalone mode, want 1 (use mode cluster or sentinel)", len(c.Addrs))
	}
	if c.Mode == ModeSentinel && c.MasterName == "" {
		bad("master_name: required in sentinel mode")
	}
	if c.Mode == ModeCluster && c.DB != 0 {
		bad("db %d: Redis Cluster has only database 0", c.DB)
	}
	if c.DB < 0 {
		bad("db %d: must be >= 0", c.DB)
	}
	if c.PasswordEnv != "" && !validEnvName(c.PasswordEnv) {
		bad("password_env %q: not an environment variable name", c.PasswordEnv)
	}
	if c.DialTimeout < 0 {
		bad("dial_timeout %v: must be > 0", c.DialTimeout)
	}
	if c.ReadTimeout < 0 {
		bad("read_timeout %v: must be > 0", c.ReadTimeout)
	}
	if c.ReplicaAcks < 0 {
		bad("replica_acks %d: must be >= 0", c.ReplicaAcks)
	}
	if c.ReplicaAckTimeout < 0 {
		bad("replica_ack_timeout %v: must be > 0", c.ReplicaAckTimeout)
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		bad("key_prefix %q: must not contain '{' or '}' (they delimit hash tags)", c.KeyPrefix)
	}
	if _, err := time.LoadLocation(c.DayZone); err != nil {
		bad("day_zone %q: unknown time zone", c.DayZone)
	}
	if c.CardOpsPerDay < 0 {
		bad("card_ops_per_day %d: must be > 0", c.CardOpsPerDay)
	}
	if c.CardWrongPINPerHour < 0 {
		bad("card_wrong_pin_per_hour %d: must be > 0", c.CardWrongPINPerHour)
	}
	if c.TerminalRPS < 0 || c.TerminalRPS > 1e6 {
		bad("terminal_rps %v: must be in (0, 1e6]", c.TerminalRPS)
	}
	if c.TerminalBurst < 0 {
		bad("terminal_burst %d: must be > 0", c.TerminalBurst)
	}
	if c.AcquirerRPS < 0 || c.AcquirerRPS > 1e6 {
		bad("acquirer_rps %v: must be in (0, 1e6]", c.AcquirerRPS)
	}
	if c.AcquirerBurst < 0 {
		bad("acquirer_burst %d: must be > 0", c.AcquirerBurst)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redislimit config: %w", err)
	}
	return nil
}

func validEnvName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}
