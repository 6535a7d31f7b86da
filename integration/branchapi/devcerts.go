package branchapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of a development certificate directory (WriteDevCerts). Client
// identities have <File>.pem and <File>-key.pem.
const (
	DevCAFile         = "ca.pem"
	DevCAKeyFile      = "ca-key.pem"
	DevServerCertFile = "server.pem"
	DevServerKeyFile  = "server-key.pem"
)

// Development identities and their branch.
const (
	DevBranch        = "BR0117"
	devOrganization  = "pingate development bank"
	devCertValidity  = 365 * 24 * time.Hour
	devCAValidity    = 5 * 365 * 24 * time.Hour
	devRenewalMargin = 7 * 24 * time.Hour
)

// DevIdentity is one development client certificate and the identity its
// subject maps to.
type DevIdentity struct {
	File   string // base name of the certificate and key files
	Client Client
}

// DevIdentities are the development branch's clients for institution (an
// acquirer id): two tellers, a supervisor and a kiosk.
func DevIdentities(institution string) []DevIdentity {
	mk := func(file, cn, id string, roles ...Role) DevIdentity {
		name := pkix.Name{CommonName: cn, OrganizationalUnit: []string{DevBranch}, Organization: []string{devOrganization}}
		return DevIdentity{File: file, Client: Client{Subject: name.String(), ID: id, Institution: institution, Branch: DevBranch, Roles: roles}}
	}
	return []DevIdentity{
		mk("teller", "teller-0117-07", "T0117-07", RoleTeller),
		mk("teller2", "teller-0117-08", "T0117-08", RoleTeller),
		mk("supervisor", "supervisor-0117-01", "S0117-01", RoleSupervisor),
		mk("kiosk", "kiosk-0117-01", "K0117-01", RoleKiosk),
	}
}

// DevConfig is the branch API of the embedded development default: the
// development identities of institution, with dual control on (the
// default: dual_control unset), and the certificates of dir (see
// EnsureDevCerts).
func DevConfig(dir, addr, institution string) Config {
	ids := DevIdentities(institution)
	clients := make([]Client, len(ids))
	for i, id := range ids {
		clients[i] = id.Client
	}
	return Config{
		Addr: addr,
		TLS: TLSConfig{
			CertFile: filepath.Join(dir, DevServerCertFile), KeyFile: filepath.Join(dir, DevServerKeyFile),
			ClientCAFile: filepath.Join(dir, DevCAFile),
		},
		Clients: clients,
		Institutions: []Institution{{ID: institution, Branches: []Branch{{ID: DevBranch,
			Address: []string{"Development Bank, Branch 0117", "1 Example Road", "Example City 100000"}}}}},
	}
}

// EnsureDevCerts makes the development certificates in dir unless they are
// all there and valid for at least another week: a CA, a server certificate
// for localhost, 127.0.0.1 and ::1, and one client certificate per
// DevIdentities entry. Keys are ECDSA P-256, written 0600. These
// certificates protect nothing: the CA key sits beside them.
func EnsureDevCerts(dir, institution string, now time.Time) error {
	ids := DevIdentities(institution)
	files := []string{DevCAFile, DevCAKeyFile, DevServerCertFile, DevServerKeyFile}
	for _, id := range ids {
		files = append(files, id.File+".pem", id.File+"-key.pem")
	}
	fresh := true
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			fresh = false
			break
		}
	}
	if fresh {
		if c, err := readCert(filepath.Join(dir, DevServerCertFile)); err == nil && now.Add(devRenewalMargin).Before(c.NotAfter) {
			return nil
		}
	}
	return WriteDevCerts(dir, ids, now)
}

// WriteDevCerts writes a new development CA, server certificate and the
// client certificates of ids into dir (created 0700), replacing any there.
func WriteDevCerts(dir string, ids []DevIdentity, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := newCA("pingate development branch CA", now)
	if err != nil {
		return err
	}
	if err := ca.write(dir, DevCAFile, DevCAKeyFile); err != nil {
		return err
	}
	srv, err := ca.issue(pkix.Name{CommonName: "localhost", Organization: []string{"pingate"}}, true, now, now.Add(devCertValidity))
	if err != nil {
		return err
	}
	if err := srv.write(dir, DevServerCertFile, DevServerKeyFile); err != nil {
		return err
	}
	for _, id := range ids {
		name, err := parseSubject(id.Client.Subject)
		if err != nil {
			return fmt.Errorf("dev identity %s: %w", id.File, err)
		}
		c, err := ca.issue(name, false, now, now.Add(devCertValidity))
		if err != nil {
			return err
		}
		if err := c.write(dir, id.File+".pem", id.File+"-key.pem"); err != nil {
			return err
		}
	}
	return nil
}

// certKey is a certificate with its private key.
type certKey struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newCA(cn string, now time.Time) (*certKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{devOrganization}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certKey{cert: cert, der: der, key: key}, nil
}

// issue makes a leaf certificate valid from notBefore to notAfter: a server
// certificate for localhost and the loopback addresses, or a client one.
func (ca *certKey) issue(subject pkix.Name, server bool, notBefore, notAfter time.Time) (*certKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      subject,
		NotBefore:    notBefore.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certKey{cert: cert, der: der, key: key}, nil
}

// crl makes a CRL of ca revoking serials.
func (ca *certKey) crl(now time.Time, serials ...*big.Int) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, len(serials))
	for i, s := range serials {
		entries[i] = x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Minute)}
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(now.Unix()), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
}

func (c *certKey) write(dir, certFile, keyFile string) error {
	kder, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return err
	}
	defer clear(kder)
	if err := writePEM(filepath.Join(dir, keyFile), "PRIVATE KEY", kder, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, certFile), "CERTIFICATE", c.der, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	err = pem.Encode(f, &pem.Block{Type: typ, Bytes: der})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cs, err := parseCerts(b)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, errors.New("no certificate")
	}
	return cs[0], nil
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) // never fails (crypto/rand, Go 1.24+)
	return n.Add(n, big.NewInt(1))
}

// parseSubject reads the subjects DevIdentities writes: "CN=..,OU=..,O=..".
// It handles those three attributes only, without escapes.
func parseSubject(s string) (pkix.Name, error) {
	var n pkix.Name
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return n, errors.New("subject: want KEY=value parts")
		}
		switch k {
		case "CN":
			n.CommonName = v
		case "OU":
			n.OrganizationalUnit = append(n.OrganizationalUnit, v)
		case "O":
			n.Organization = append(n.Organization, v)
		default:
			return n, fmt.Errorf("subject attribute %s not supported here", k)
		}
	}
	return n, nil
}
