package branchapi

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"
)

// Errors of client certificate checks. The client sees only the TLS alert;
// these reach the server's debug log.
var (
	ErrRevoked         = errors.New("client certificate revoked")
	ErrUnknownIdentity = errors.New("client certificate subject not configured")
)

// serverTLS builds the TLS configuration: TLS 1.2 minimum (1.3 whenever the
// client offers it: Go prefers the highest common version), forward-secret
// AEAD suites only for 1.2, and a verified client certificate that is not
// revoked and whose subject is a configured identity.
func (s *Server) serverTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("branch api server certificate: %w", err)
	}
	pemCAs, err := os.ReadFile(s.cfg.TLS.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("branch api client CA: %w", err)
	}
	pool := x509.NewCertPool()
	cas, err := parseCerts(pemCAs)
	if err != nil || len(cas) == 0 {
		return nil, fmt.Errorf("branch api client CA %s: no PEM certificate", s.cfg.TLS.ClientCAFile)
	}
	for _, c := range cas {
		pool.AddCert(c)
	}
	rev, err := newRevocation(s.cfg.TLS, cas, s.now)
	if err != nil {
		return nil, err
	}
	s.rev = rev
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		CipherSuites: []uint16{ // TLS 1.2 only; TLS 1.3 suites are not configurable
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		VerifyConnection: s.verifyClient,
	}, nil
}

// verifyClient runs after the chain has been verified (unknown CA and
// expired certificates never get here): it refuses a revoked certificate
// and a subject that maps to no identity. Returning an error makes the
// handshake fail with a TLS alert; no HTTP answer is ever written.
func (s *Server) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	if s.rev.revoked(leaf.SerialNumber) {
		s.log.Debug("branch api: revoked client certificate refused", "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.Text(16))
		return ErrRevoked
	}
	if _, ok := s.cfg.client(leaf.Subject.String()); !ok {
		s.log.Debug("branch api: unknown client certificate subject refused", "subject", leaf.Subject.String())
		return ErrUnknownIdentity
	}
	return nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// revocation is the set of revoked serial numbers: the configured list plus
// the CRL, which is re-read when its file changes (checked at most every
// crlCheckEvery).
type revocation struct {
	static map[string]bool
	file   string
	cas    []*x509.Certificate
	now    func() time.Time

	mu      sync.Mutex
	crl     map[string]bool
	modTime time.Time
	checked time.Time
}

const crlCheckEvery = 5 * time.Second

func serialKey(n *big.Int) string { return strings.ToLower(n.Text(16)) }

func newRevocation(c TLSConfig, cas []*x509.Certificate, now func() time.Time) (*revocation, error) {
	r := &revocation{static: map[string]bool{}, file: c.CRLFile, cas: cas, now: now}
	for _, s := range c.RevokedSerials {
		n, ok := new(big.Int).SetString(strings.ReplaceAll(s, ":", ""), 16)
		if !ok {
			return nil, fmt.Errorf("branch.tls.revoked_serials: %q is not hexadecimal", s)
		}
		r.static[serialKey(n)] = true
	}
	if r.file != "" {
		if err := r.load(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// load reads and checks the CRL: it must be signed by one of the client CAs.
func (r *revocation) load() error {
	st, err := os.Stat(r.file)
	if err != nil {
		return fmt.Errorf("branch api CRL: %w", err)
	}
	raw, err := os.ReadFile(r.file)
	if err != nil {
		return fmt.Errorf("branch api CRL: %w", err)
	}
	if blk, _ := pem.Decode(raw); blk != nil {
		raw = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(raw)
	if err != nil {
		return fmt.Errorf("branch api CRL %s: %w", r.file, err)
	}
	signed := false
	for _, ca := range r.cas {
		if crl.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return fmt.Errorf("branch api CRL %s: not signed by a client CA", r.file)
	}
	m := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		m[serialKey(e.SerialNumber)] = true
	}
	r.mu.Lock()
	r.crl, r.modTime = m, st.ModTime()
	r.mu.Unlock()
	return nil
}

// revoked reports whether serial is revoked. A CRL that changed on disk is
// re-read first; if the new file does not load, the previous list stays in
// force (a broken CRL never un-revokes anyone).
func (r *revocation) revoked(serial *big.Int) bool {
	k := serialKey(serial)
	if r.static[k] {
		return true
	}
	if r.file == "" {
		return false
	}
	r.mu.Lock()
	now := r.now()
	if now.Sub(r.checked) >= crlCheckEvery {
		r.checked = now
		if st, err := os.Stat(r.file); err == nil && !st.ModTime().Equal(r.modTime) {
			r.mu.Unlock()
			_ = r.load()
			r.mu.Lock()
		}
	}
	hit := r.crl[k]
	r.mu.Unlock()
	return hit
}
