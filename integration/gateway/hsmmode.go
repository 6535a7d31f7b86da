package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"pingate/integration/payshield"
	"pingate/integration/payshield/hsmsim"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// PayShieldConfig is security.payshield: the HSMs of security.module
// payshield (docs/hsm.md).
type PayShieldConfig struct {
	Hosts []string `yaml:"hosts"` // host:port of each HSM
	// HeaderLen is the HSMs' message header length (default 4); NoHeader
	// selects 0 (one command at a time per connection).
	HeaderLen int  `yaml:"header_length"`
	NoHeader  bool `yaml:"no_header"`
	// Connections per HSM (default 2).
	Connections int `yaml:"connections"`
	// Timeout per command when the request has less time (default 2s).
	Timeout time.Duration `yaml:"timeout"`
	// HealthInterval between NC health checks (default 5s).
	HealthInterval time.Duration `yaml:"health_interval"`
	TLS            struct {
		CAFile     string `yaml:"ca_file"`
		CertFile   string `yaml:"cert_file"`
		KeyFile    string `yaml:"key_file"`
		ServerName string `yaml:"server_name"`
	} `yaml:"tls"`
	// KeyFile is a JSON array of keys under the HSMs' LMK (id, version,
	// usage, algorithm, length, token, kcv): no clear key, ever.
	KeyFile string `yaml:"key_file"`
	// KeyBlockLMK says the HSMs run a key-block LMK (keys are Thales key
	// blocks, scheme S); LMKID, when set, names the LMK in each command
	// (2 digits, e.g. "01").
	KeyBlockLMK bool   `yaml:"key_block_lmk"`
	LMKID       string `yaml:"lmk_id"`
}

// Client is the payshield.Config of these HSMs, with their TLS files read.
func (c PayShieldConfig) Client(log *slog.Logger) (payshield.Config, error) {
	pc := payshield.Config{
		Hosts: c.Hosts, HeaderLen: c.HeaderLen, NoHeader: c.NoHeader, Connections: c.Connections,
		Timeout: c.Timeout, HealthInterval: c.HealthInterval, Logger: log,
		KeyBlockLMK: c.KeyBlockLMK, LMKID: c.LMKID,
	}
	if t := c.TLS; t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return pc, fmt.Errorf("security.payshield.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return pc, errors.New("security.payshield.tls.ca_file: no PEM certificate")
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return pc, fmt.Errorf("security.payshield.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		pc.TLS = tc
	}
	return pc, nil
}

// validate names the problems of security with module payshield.
func (c SecurityConfig) validatePayShield(bad func(string, ...any)) {
	switch c.Module {
	case "", "software":
		return
	case "payshield":
	default:
		bad("security.module %q: want software or payshield", c.Module)
		return
	}
	p := c.PayShield
	pc := payshield.Config{Hosts: p.Hosts, HeaderLen: p.HeaderLen, NoHeader: p.NoHeader, Connections: p.Connections, Timeout: p.Timeout, LMKID: p.LMKID}
	if err := pc.Validate(); err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok { // each problem by itself
			errs = j.Unwrap()
		}
		for _, e := range errs {
			bad("security.payshield: %v", e)
		}
	}
	if p.NoHeader && p.HeaderLen != 0 {
		bad("security.payshield: no_header with header_length %d: no_header means a header of length 0; give one of them", p.HeaderLen)
	}
	if p.HealthInterval < 0 {
		bad("security.payshield.health_interval %s: must not be negative", p.HealthInterval)
	}
	if (p.TLS.CertFile == "") != (p.TLS.KeyFile == "") {
		bad("security.payshield.tls: cert_file and key_file go together")
	}
	if c.KeyStore != "" {
		bad("security.key_store: holds keys under a software LMK; with module payshield keys are in security.payshield.key_file")
	}
	if p.KeyFile == "" && !c.DevKeys {
		bad("security.payshield.key_file: module payshield needs its keys under the HSM's LMK (or dev_keys against pingate-dev hsm-sim)")
	}
}

// PayShieldKeys loads the module's keys: the key file, and with dev_keys the
// TDES development keys under the public test LMK of pingate-dev hsm-sim —
// the test variant LMK, or with key_block_lmk the test key-block LMK (the
// AES ones are left out: the module refuses AES keys).
func PayShieldKeys(c SecurityConfig, log *slog.Logger) (*payshield.Keys, error) {
	grace := c.RotationGrace
	keys := payshield.NewKeys(grace)
	if c.PayShield.KeyFile != "" {
		if err := keys.LoadFile(c.PayShield.KeyFile); err != nil {
			return nil, fmt.Errorf("security.payshield.key_file: %w", err)
		}
	}
	if c.DevKeys {
		for _, id := range []string{devkeys.ATMZPK, devkeys.ATMZMK, devkeys.IssuerPVK} {
			k, err := devkeys.Key(id)
			if err != nil {
				return nil, err
			}
			typ, ok := map[pinblock.Usage]string{pinblock.UsageZPK: "001", pinblock.UsageZMK: "000", pinblock.UsagePVK: "002"}[k.Usage()]
			if !ok || k.Algorithm() != pinblock.TDES {
				k.Zeroize()
				continue
			}
			var tok string
			if c.PayShield.KeyBlockLMK {
				// The key usage and mode of use payshield gives new keys.
				kb := map[pinblock.Usage]struct {
					usage string
					mode  byte
				}{pinblock.UsageZPK: {"P0", 'B'}, pinblock.UsageZMK: {"K0", 'B'}, pinblock.UsagePVK: {"V2", 'C'}}[k.Usage()]
				tok, err = hsmsim.WrapUnderTestKeyBlockLMK(kb.usage, kb.mode, devKeyBytes(id))
			} else {
				tok, err = hsmsim.EncipherUnderTestLMK(typ, devKeyBytes(id))
			}
			if err != nil {
				return nil, err
			}
			if _, err := keys.Add(payshield.Key{ID: id, Usage: k.Usage(), Algorithm: pinblock.TDES, Length: k.Len(), Token: tok, KCV: k.KCV()}, false); err != nil {
				return nil, err
			}
			k.Zeroize()
		}
		log.Warn("payshield module on the development keys under the public Thales test LMK: pingate-dev hsm-sim only")
	}
	return keys, nil
}

// devKeyBytes is a development key's published value (docs/dev-keys.md).
func devKeyBytes(id string) []byte {
	b, _ := hex.DecodeString(map[string]string{
		devkeys.ATMZPK:    "0123456789ABCDEFFEDCBA9876543210",
		devkeys.ATMZMK:    "89E88CF7931444F334BD7547FC3F380C",
		devkeys.IssuerPVK: "FEDCBA98765432100123456789ABCDEF",
	}[id])
	return b
}

// startPayShield builds the payShield module of security.module payshield;
// the flow uses it in place of the software module.
func (g *Gateway) startPayShield() error {
	pc, err := g.cfg.Security.PayShield.Client(g.log)
	if err != nil {
		return err
	}
	g.psKeys, err = PayShieldKeys(g.cfg.Security, g.log)
	if err != nil {
		return err
	}
	g.ps, err = payshield.New(pc)
	if err != nil {
		return fmt.Errorf("security.payshield: %w", err)
	}
	g.sm = payshield.NewModule(g.ps, g.psKeys)
	if sec := g.cfg.Security; sec.PayShield.KeyFile != "" && !sec.DevKeys {
		// An online key change (FA) is taken only once the key file holds
		// it, so a restart keeps it; with dev_keys it stays in memory.
		path := sec.PayShield.KeyFile
		g.psKeys.SetPersist(func(list []payshield.Key) error { return payshield.SaveKeyFile(path, list) })
	}
	return nil
}

// hsmKeyChanges takes acquirers' online key changes (0800/161) in HSM mode:
// the module imports the key under the ZMK (FA), the key file is replaced
// with it before it is used (Keys.SetPersist; a key file that cannot be
// written refuses the change), and security.custody_log, when set, gets
// the rotation's record, as `pingate hsm-key import --rotate` writes it.
type hsmKeyChanges struct {
	m          pinblock.SecurityModule
	custodyLog string
	log        *slog.Logger
}

var _ routing.KeyImporter = (*hsmKeyChanges)(nil)

func (s *hsmKeyChanges) Import(ctx context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	info, err := s.m.Import(ctx, req)
	if err != nil || s.custodyLog == "" {
		return info, err
	}
	action := keystore.ActionImport
	if req.Rotate {
		action = keystore.ActionRotate
	}
	rec := keystore.CustodyRecord{Who: req.Who, Why: req.Why, Action: action, KeyID: info.ID, Usage: info.Usage,
		Version: info.Version, KCV: info.KCV, Under: req.ZMK.ID}
	l, err := keystore.OpenCustodyLog(s.custodyLog)
	if err == nil {
		_, err = l.Append(rec)
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		// The key is in the key file and in use; only its record is missing.
		s.log.ErrorContext(ctx, "key change taken and in the key file, but its custody record was not written", "key", info.ID, "version", info.Version, "kcv", info.KCV, "err", err)
	}
	return info, nil
}

// UsePayShieldSim turns the embedded default into security.module payshield
// on hosts running pingate-dev hsm-sim: the development keys under the public
// test LMK, the TDES ATM network only (the branch front end's key is AES,
// which a variant-LMK payShield does not hold; SM4 it refuses), and issuers on the TDES ATM zone key
// in ISO 3, which the issuer simulator is given too.
func (c *Config) UsePayShieldSim(hosts ...string) {
	c.Security.Module = "payshield"
	c.Security.PayShield = PayShieldConfig{Hosts: hosts}
	// The SM4 ATM network and the SM4 issuer go too: the payShield module
	// refuses SM4 (payshield.ErrAlgorithm), and their routes with them.
	var acqs []routing.AcquirerConfig
	for _, a := range c.Routing.Acquirers {
		if a.Channel == routing.ChannelATM && a.PINAlgorithm != pinblock.SM4 {
			acqs = append(acqs, a)
		}
	}
	c.Routing.Acquirers = acqs
	var iss []routing.IssuerConfig
	dropped := map[string]bool{}
	for _, is := range c.Routing.Issuers {
		if is.PINAlgorithm == pinblock.SM4 {
			dropped[is.ID] = true
			continue
		}
		is.PINFormat, is.Key = 3, devkeys.ATMZPK
		iss = append(iss, is)
	}
	c.Routing.Issuers = iss
	var routes []routing.Route
	for _, r := range c.Routing.Routes {
		if !dropped[r.Issuer] {
			routes = append(routes, r)
		}
	}
	c.Routing.Routes = routes
	if c.IssuerSim != nil {
		c.IssuerSim.ZPK = devkeys.ATMZPK
	}
}
