package branchapi

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"pingate/routing"
)

// Config is the branch and self-service HTTPS API. Secrets are file paths,
// never values: the server key file must be readable by pingate only.
type Config struct {
	// Addr is the listen address, host:port.
	Addr string `yaml:"addr" json:"addr"`
	// TLS is the server certificate and how client certificates are checked.
	TLS TLSConfig `yaml:"tls" json:"tls"`
	// Clients maps client certificate subjects to identities. A certificate
	// whose subject is not listed gets no answer beyond the TLS alert.
	Clients []Client `yaml:"clients" json:"clients"`
	// Institutions lists, per acquirer id, the dual-control policy and the
	// branches (with the address lines printed on PIN mailers).
	Institutions []Institution `yaml:"institutions" json:"institutions"`
	// MaxBodyBytes bounds a request body (default 16 KiB): larger is 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes" json:"max_body_bytes"`
	// ReadHeaderTimeout bounds reading the request headers (default 5s);
	// past it the connection is closed.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" json:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included (default
	// 10s); a body still arriving after it is answered 408 if the connection
	// still takes an answer.
	ReadTimeout time.Duration `yaml:"read_timeout" json:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer (default 30s; keep it above routing.request_timeout).
	WriteTimeout time.Duration `yaml:"write_timeout" json:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections (default 60s).
	IdleTimeout time.Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// RecordTTL is how long operation outcomes and idempotency records are
	// kept for lookups and retries (default 24h).
	RecordTTL time.Duration `yaml:"record_ttl" json:"record_ttl"`
	// MaxRecords bounds the operations and idempotency records held in
	// memory (default 100000); past it new operations are refused with 503.
	MaxRecords int `yaml:"max_records" json:"max_records"`
	// MaxConns bounds the open client connections (default 512). A
	// connection beyond it waits in the listen backlog, unanswered, until
	// one closes; the header, read and idle timeouts free the slots that
	// slow or idle clients hold.
	MaxConns int `yaml:"max_conns" json:"max_conns"`
}

// TLSConfig names the server's certificate and the client CA. TLS 1.2 is the
// minimum; TLS 1.3 is negotiated whenever the client offers it.
type TLSConfig struct {
	// CertFile is the server certificate chain (PEM), KeyFile its private
	// key (PEM; a reference to a file, never the key itself).
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
	// ClientCAFile is the PEM bundle of the CAs that issue branch client
	// certificates. A certificate from any other CA is refused.
	ClientCAFile string `yaml:"client_ca_file" json:"client_ca_file"`
	// CRLFile is an optional certificate revocation list (PEM or DER)
	// signed by a client CA. It is re-read when the file changes.
	CRLFile string `yaml:"crl_file" json:"crl_file"`
	// RevokedSerials are client certificate serial numbers (hex) refused in
	// addition to the CRL.
	RevokedSerials []string `yaml:"revoked_serials" json:"revoked_serials"`
}

// Role is what an authenticated identity may do.
type Role string

// Roles.
const (
	// RoleTeller submits changes, resets and unblocks.
	RoleTeller Role = "teller"
	// RoleSupervisor submits like a teller and approves other identities'
	// resets under dual control.
	RoleSupervisor Role = "supervisor"
	// RoleKiosk is a self-service kiosk: it submits changes and unblocks on
	// the kiosk channel, never a reset (a reset follows an identity check
	// at a counter). It cannot be combined with another role.
	RoleKiosk Role = "kiosk"
)

// Client is one client certificate identity.
type Client struct {
	// Subject is the certificate subject as Go prints it (RFC 2253 order,
	// most specific first), e.g. "CN=teller-0117-07,OU=BR0117,O=Example Bank".
	Subject string `yaml:"subject" json:"subject"`
	// ID names the identity in events and in the issuer message (teller or
	// supervisor id): 1–16 letters, digits, '.', '_' or '-'.
	ID string `yaml:"id" json:"id"`
	// Institution is the acquirer id (routing.acquirers) it acts for.
	Institution string `yaml:"institution" json:"institution"`
	// Branch is the branch it belongs to; requests must name this branch.
	Branch string `yaml:"branch" json:"branch"`
	// Roles it holds.
	Roles []Role `yaml:"roles" json:"roles"`
}

// Has reports whether c holds role r.
func (c *Client) Has(r Role) bool { return slices.Contains(c.Roles, r) }

// MayReset reports whether c may submit a forgotten-PIN reset: teller and
// supervisor identities (staff at a counter) may, kiosks may not.
func (c *Client) MayReset() bool {
	return !c.Has(RoleKiosk) && (c.Has(RoleTeller) || c.Has(RoleSupervisor))
}

// Channel is kiosk for a kiosk identity, else branch.
func (c *Client) Channel() routing.Channel {
	if c.Has(RoleKiosk) {
		return routing.ChannelKiosk
	}
	return routing.ChannelBranch
}

// Institution is one acquiring institution's policy for this channel.
type Institution struct {
	// ID is the acquirer id, as in routing.acquirers.
	ID string `yaml:"id" json:"id"`
	// DualControl: a forgotten-PIN reset needs a supervisor's approval
	// before it reaches the issuer. Unset means on (the safe default);
	// only an explicit false lets a teller's reset run at once.
	DualControl *bool `yaml:"dual_control" json:"dual_control"`
	// ApprovalWindow is how long a pending reset waits for its approval
	// (default 15m).
	ApprovalWindow time.Duration `yaml:"approval_window" json:"approval_window"`
	// Branches of the institution.
	Branches []Branch `yaml:"branches" json:"branches"`
}

// Branch is one bank outlet.
type Branch struct {
	ID string `yaml:"id" json:"id"`
	// Address lines printed on the PIN mailers the branch hands out.
	Address []string `yaml:"address" json:"address"`
}

// Defaults used when a field is zero.
const (
	DefaultMaxBodyBytes      = 16 << 10
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultRecordTTL         = 24 * time.Hour
	DefaultMaxRecords        = 100000
	DefaultMaxConns          = 512
	DefaultApprovalWindow    = 15 * time.Minute
)

// WithDefaults returns a copy with zero fields filled in.
func (c Config) WithDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.RecordTTL == 0 {
		c.RecordTTL = DefaultRecordTTL
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	c.Institutions = slices.Clone(c.Institutions)
	for i := range c.Institutions {
		if c.Institutions[i].ApprovalWindow == 0 {
			c.Institutions[i].ApprovalWindow = DefaultApprovalWindow
		}
	}
	return c
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9._-]{1,16}$`)
	serialPattern = regexp.MustCompile(`^[0-9A-Fa-f:]{1,64}$`)
)

// validIdentityID reports whether id may name a teller or supervisor: the
// id pattern, and nothing an outcome event would refuse as a possible PAN or
// PIN block (routing.LooksSecret).
func validIdentityID(id string) bool { return idPattern.MatchString(id) && !routing.LooksSecret(id) }

// Validate names every problem it finds.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Addr == "" {
		bad("branch.addr: empty")
	}
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		bad("branch.tls: cert_file and key_file are required")
	}
	if c.TLS.ClientCAFile == "" {
		bad("branch.tls.client_ca_file: required (mutual TLS)")
	}
	for i, s := range c.TLS.RevokedSerials {
		if !serialPattern.MatchString(s) {
			bad("branch.tls.revoked_serials[%d]: want a hex serial number", i)
		}
	}
	if c.MaxBodyBytes < 0 || c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.RecordTTL < 0 || c.MaxRecords < 0 || c.MaxConns < 0 {
		bad("branch: sizes, timeouts, record and connection limits must not be negative")
	}
	branches := map[string]map[string]bool{}
	for i, in := range c.Institutions {
		where := fmt.Sprintf("branch.institutions[%d] (%s)", i, in.ID)
		if in.ID == "" {
			bad("%s: empty id", where)
		}
		if branches[in.ID] != nil {
			bad("%s: listed twice", where)
		}
		branches[in.ID] = map[string]bool{}
		if in.ApprovalWindow < 0 {
			bad("%s: approval_window must not be negative", where)
		}
		for j, b := range in.Branches {
			if !idPattern.MatchString(b.ID) {
				bad("%s: branches[%d]: id %q: want 1–16 letters, digits, '.', '_' or '-'", where, j, b.ID)
			}
			branches[in.ID][b.ID] = true
		}
	}
	subjects := map[string]bool{}
	ids := map[string]bool{}
	for i, cl := range c.Clients {
		where := fmt.Sprintf("branch.clients[%d] (%s)", i, cl.ID)
		if strings.TrimSpace(cl.Subject) == "" {
			bad("%s: empty subject", where)
		}
		if subjects[cl.Subject] {
			bad("%s: subject listed twice", where)
		}
		subjects[cl.Subject] = true
		if !validIdentityID(cl.ID) {
			bad("%s: id: want 1–16 letters, digits, '.', '_' or '-', without a run of 12 or more digits or of 16 or more hex digits (an outcome event refuses those as a possible PAN or PIN block)", where)
		}
		if ids[cl.Institution+"/"+cl.ID] {
			bad("%s: id listed twice in institution %s", where, cl.Institution)
		}
		ids[cl.Institution+"/"+cl.ID] = true
		bs, ok := branches[cl.Institution]
		switch {
		case !ok:
			bad("%s: institution %q is not in branch.institutions", where, cl.Institution)
		case !bs[cl.Branch]:
			bad("%s: branch %q is not a branch of institution %s", where, cl.Branch, cl.Institution)
		}
		if len(cl.Roles) == 0 {
			bad("%s: roles: give at least one of teller, supervisor, kiosk", where)
		}
		for _, r := range cl.Roles {
			if r != RoleTeller && r != RoleSupervisor && r != RoleKiosk {
				bad("%s: roles: unknown role %q", where, r)
			}
		}
		if cl.Has(RoleKiosk) && len(cl.Roles) > 1 {
			bad("%s: roles: kiosk cannot be combined with another role", where)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) client(subject string) (*Client, bool) {
	for i := range c.Clients {
		if c.Clients[i].Subject == subject {
			return &c.Clients[i], true
		}
	}
	return nil, false
}

func (c *Config) institution(id string) (*Institution, bool) {
	for i := range c.Institutions {
		if c.Institutions[i].ID == id {
			return &c.Institutions[i], true
		}
	}
	return nil, false
}

// dualControl reports whether in's resets wait for a supervisor: unless
// dual_control is explicitly false.
func (in *Institution) dualControl() bool { return in.DualControl == nil || *in.DualControl }

func (in *Institution) branch(id string) (*Branch, bool) {
	for i := range in.Branches {
		if in.Branches[i].ID == id {
			return &in.Branches[i], true
		}
	}
	return nil, false
}
