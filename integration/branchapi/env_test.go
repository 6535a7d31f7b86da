package branchapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"pingate/integration/events"
	"pingate/integration/issuersim"
	"pingate/integration/outbox"
	"pingate/integration/redislimit"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// spans receives every span of the package's tests.
var spans = tracetest.NewInMemoryExporter()

func TestMain(m *testing.M) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	otel.SetTracerProvider(tp)
	goleak.VerifyTestMain(m,
		// miniredis and pebble keep package-level helpers running.
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/internal/invariants.init.0.func1"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

const (
	testAcquirer = "200001"
	testIssuer   = "ssbank"
	otherInst    = "200002"
)

var testPop = issuersim.Population{Seed: 7, BINs: []string{"62284812"}, PerBIN: 1000}

// card returns a card of the simulated issuer; each test uses its own
// indexes (below 900: no special cards).
func card(i int) issuersim.Card { return testPop.Card(i) }

// syncBuffer collects the log of every component of a test environment.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a running branch API over a real flow: the software security
// module, the issuer simulator over TCP, issuer links, a pebble journal and
// the Redis limiter on miniredis.
type env struct {
	t       *testing.T
	dir     string
	srv     *Server
	addr    string
	sim     *issuersim.Sim
	journal *outbox.Journal
	spool   *pinblock.SpoolPrinter
	logs    *syncBuffer
	ca      *certKey
	certs   map[string]tls.Certificate
	// bodies are every response body the test clients received.
	mu     sync.Mutex
	bodies [][]byte
	// de48 is DE 48 of every request sent to the issuer, read off the wire.
	de48 []iso8583.AdditionalData
}

type envOptions struct {
	// dualControl is the institution's explicit dual_control (false
	// included); mutate may unset it to test the default.
	dualControl bool
	limits      redislimit.Config
	clientCA    func(e *env) // extra certificates, made before mutate runs
	// issuerLatency is the simulated issuer's delay before each answer.
	issuerLatency time.Duration
	// now is the server's clock (nil: time.Now).
	now    func() time.Time
	mutate func(*Config)
}

// identities of the test: branch BR0117 of testAcquirer, and a supervisor of
// another branch.
func testIdentities() []DevIdentity {
	ids := DevIdentities(testAcquirer)
	name := pkix.Name{CommonName: "supervisor-0200-01", OrganizationalUnit: []string{"BR0200"}, Organization: []string{devOrganization}}
	ids = append(ids, DevIdentity{File: "supervisor-br0200", Client: Client{Subject: name.String(), ID: "S0200-01",
		Institution: testAcquirer, Branch: "BR0200", Roles: []Role{RoleSupervisor}}})
	name = pkix.Name{CommonName: "teller-other-01", OrganizationalUnit: []string{"BR9000"}, Organization: []string{devOrganization}}
	ids = append(ids, DevIdentity{File: "teller-other-inst", Client: Client{Subject: name.String(), ID: "T9000-01",
		Institution: otherInst, Branch: "BR9000", Roles: []Role{RoleTeller}}})
	return ids
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), logs: &syncBuffer{}, certs: map[string]tls.Certificate{}}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := time.Now()

	// Certificates: the branch CA and its clients, written as files.
	var err error
	e.ca, err = newCA("test branch CA", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ca.write(e.dir, DevCAFile, DevCAKeyFile); err != nil {
		t.Fatal(err)
	}
	srvCert, err := e.ca.issue(pkix.Name{CommonName: "localhost"}, true, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := srvCert.write(e.dir, DevServerCertFile, DevServerKeyFile); err != nil {
		t.Fatal(err)
	}
	ids := testIdentities()
	for _, id := range ids {
		name, err := parseSubject(id.Client.Subject)
		if err != nil {
			t.Fatal(err)
		}
		e.addClient(id.File, e.ca, name, now, now.Add(time.Hour))
	}

	// The flow, over real components.
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ring.Zeroize)
	hsm := pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil)
	e.spool, err = pinblock.NewSpoolPrinter(filepath.Join(e.dir, "mailers"))
	if err != nil {
		t.Fatal(err)
	}
	hsm.SetMailerPrinter(e.spool)

	zpk, _ := devkeys.Key(devkeys.IssuerZPK)
	pvk, _ := devkeys.Key(devkeys.IssuerPVK)
	e.sim, err = issuersim.New(issuersim.Config{Population: testPop, ZPK: zpk, PVK: pvk, Logger: log, Latency: o.issuerLatency})
	if err != nil {
		t.Fatal(err)
	}
	simLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan struct{})
	go func() { defer close(simDone); _ = e.sim.Server().Serve(context.Background(), simLn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.sim.Server().Shutdown(ctx)
		<-simDone
	})

	rcfg := routing.Config{
		Institution: "999001",
		Acquirers: []routing.AcquirerConfig{
			{ID: testAcquirer, Channel: routing.ChannelBranch, Terminals: []string{"*"}, Keys: map[int]string{1: devkeys.BranchZPK}, Formats: []int{4}},
			{ID: otherInst, Channel: routing.ChannelBranch, Terminals: []string{"*"}, Keys: map[int]string{1: devkeys.BranchZPK}, Formats: []int{4}},
		},
		Issuers: []routing.IssuerConfig{{ID: testIssuer, Institution: "300001", Hosts: []string{simLn.Addr().String()}, PINFormat: 4,
			Key: devkeys.IssuerZPK, KeyIndex: 1, Timeout: 10 * time.Second}},
		Routes: []routing.Route{{Prefix: "62284812", Issuer: testIssuer}},
	}
	links := routing.NewIssuerLinks(routing.LinksConfig{
		Institution: rcfg.Institution, Issuers: rcfg.WithDefaults().Issuers, Codec: routing.IssuerDialect{}, Dial: e.dialIssuer,
		Reversals: routing.NewMemoryReversalStore(), Logger: log,
	})
	links.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = links.Shutdown(ctx)
	})
	e.journal, err = outbox.Open(outbox.Config{Dir: filepath.Join(e.dir, "journal"), Source: events.Source("branchapi-test")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.journal.Shutdown(ctx)
	})
	mr := miniredis.RunT(t)
	lc := o.limits
	lc.Mode, lc.Addrs = redislimit.ModeStandalone, []string{mr.Addr()}
	if lc.TerminalBurst == 0 {
		lc.TerminalRPS, lc.TerminalBurst = 1000, 1000 // tests run faster than people
	}
	if lc.CardOpsPerDay == 0 {
		lc.CardOpsPerDay = 1000
	}
	lim, err := redislimit.New(lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lim.Close() })
	flow, err := routing.NewFlow(rcfg, routing.Deps{
		HSM: hsm, Sink: e.journal, Issuers: links, Limiter: lim,
		Tokenizer: routing.NewTokenizer([]byte("branchapi-test-card-token-key-0123456789")),
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !links.SignedOn()[testIssuer] {
		if time.Now().After(deadline) {
			t.Fatal("issuer link did not sign on")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The branch API.
	cfg := DevConfig(e.dir, "127.0.0.1:0", testAcquirer)
	cfg.Clients = nil
	for _, id := range ids {
		cfg.Clients = append(cfg.Clients, id.Client)
	}
	cfg.Institutions[0].DualControl = &o.dualControl
	cfg.Institutions[0].Branches = append(cfg.Institutions[0].Branches, Branch{ID: "BR0200", Address: []string{"Branch 0200"}})
	cfg.Institutions = append(cfg.Institutions, Institution{ID: otherInst, Branches: []Branch{{ID: "BR9000"}}})
	if o.clientCA != nil {
		o.clientCA(e)
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	e.srv, err = New(cfg, flow, log)
	if err != nil {
		t.Fatal(err)
	}
	if o.now != nil {
		e.srv.now = o.now
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("Serve() = %v, want http.ErrServerClosed", err)
		}
	})
	return e
}

// dialIssuer connects an issuer link, noting DE 48 of every request it sends.
func (e *env) dialIssuer(ctx context.Context, addr, framing string, onFrame func([]byte)) (routing.FrameConn, error) {
	fr, err := iso8583.ParseFraming(framing)
	if err != nil {
		return nil, err
	}
	c, err := iso8583.Dial(ctx, addr, iso8583.ClientConfig{Framing: fr, OnFrame: onFrame})
	if err != nil {
		return nil, err
	}
	return wireTap{FrameConn: c, e: e}, nil
}

// wireTap reads the DE 48 of each 0100 an issuer link writes.
type wireTap struct {
	routing.FrameConn
	e *env
}

func (w wireTap) Send(frame []byte) error {
	if f, err := iso8583.Unpack(iso8583.IssuerSpec, frame); err == nil {
		if f.MTI == iso8583.MTIAuthRequest {
			var a iso8583.AdditionalData
			if f.Additional != nil {
				a = *f.Additional
			}
			w.e.mu.Lock()
			w.e.de48 = append(w.e.de48, a)
			w.e.mu.Unlock()
		}
		f.Clear()
	}
	return w.FrameConn.Send(frame)
}

// lastDE48 is DE 48 of the last request sent to the issuer.
func (e *env) lastDE48() (iso8583.AdditionalData, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.de48) == 0 {
		return iso8583.AdditionalData{}, false
	}
	return e.de48[len(e.de48)-1], true
}

// addClient issues a client certificate of ca for name, valid from notBefore
// to notAfter, under the label file.
func (e *env) addClient(file string, ca *certKey, name pkix.Name, notBefore, notAfter time.Time) *certKey {
	e.t.Helper()
	c, err := ca.issue(name, false, notBefore, notAfter)
	if err != nil {
		e.t.Fatal(err)
	}
	e.certs[file] = tls.Certificate{Certificate: [][]byte{c.der}, PrivateKey: c.key, Leaf: c.cert}
	return c
}

// client is an HTTPS client presenting the certificate labelled who ("" for
// none), trusting the test CA, with a fresh connection per request.
func (e *env) client(who string) *http.Client {
	e.t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.cert)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if who != "" {
		c, ok := e.certs[who]
		if !ok {
			e.t.Fatalf("no test certificate %q", who)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true, ForceAttemptHTTP2: false},
		Timeout:   30 * time.Second,
	}
}

func (e *env) url(path string) string { return "https://" + e.addr + path }

// response is one answer as a test sees it.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem decodes a problem+json answer.
func (r response) problem(t *testing.T) Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json (status %d)", ct, r.status)
	}
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body does not decode: %v", err)
	}
	return p
}

// result decodes an OperationResult answer.
func (r response) result(t *testing.T) OperationResult {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (status %d): %s", ct, r.status, r.body)
	}
	var res OperationResult
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatalf("result body does not decode: %v", err)
	}
	return res
}

// do sends a request as who and checks the answer against the contract.
func (e *env) do(who, method, path, template string, body []byte, hdr map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url(path), bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client(who).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s as %s: %v", method, template, who, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.bodies = append(e.bodies, b)
	e.mu.Unlock()
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	checkContract(e.t, method, template, r)
	return r
}

// post sends v as JSON.
func (e *env) post(who, path, template string, v any, hdr map[string]string) response {
	e.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(who, http.MethodPost, path, template, b, hdr)
}

// events returns every outcome event in the journal.
func (e *env) events() []routing.Event {
	e.t.Helper()
	entries, err := e.journal.Entries(1, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]routing.Event, 0, len(entries))
	for _, en := range entries {
		ev, err := events.Decode(en.Message)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// journalBytes is the raw journal: every event as stored, headers included.
func (e *env) journalBytes() []byte {
	e.t.Helper()
	entries, err := e.journal.Entries(1, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := json.Marshal(entries)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) eventByID(id string) (routing.Event, bool) {
	for _, ev := range e.events() {
		if ev.ID == id {
			return ev, true
		}
	}
	return routing.Event{}, false
}

// block enciphers pin for pan as the branch PIN pad does: format 4 under the
// branch zone PIN key.
func block(t *testing.T, pin, pan string) string {
	t.Helper()
	k, err := devkeys.Key(devkeys.BranchZPK)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pinblock.NewSecretPIN(pin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pinblock.Encipher(pinblock.Format4, p, pan, k)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%X", b)
}

func changeBody(t *testing.T, pan, oldPIN, newPIN string) map[string]any {
	return map[string]any{
		"pan": pan, "branch": DevBranch, "terminal": "BR0117T1", "teller": "T0117-07",
		"pin_format": 4, "key_index": 1, "old_pin_block": block(t, oldPIN, pan), "new_pin_block": block(t, newPIN, pan),
	}
}

func resetBody(t *testing.T, pan, newPIN string) map[string]any {
	return map[string]any{
		"pan": pan, "branch": DevBranch, "terminal": "BR0117T1", "teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000123",
		"mode": ModePINPad, "pin_format": 4, "key_index": 1, "new_pin_block": block(t, newPIN, pan),
	}
}

func generatedBody(pan string, length int) map[string]any {
	b := map[string]any{
		"pan": pan, "branch": DevBranch, "terminal": "BR0117T1", "teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000124",
		"mode": ModeGenerated,
	}
	if length != 0 {
		b["pin_length"] = length
	}
	return b
}

func unblockBody(pan string) map[string]any {
	return map[string]any{
		"pan": pan, "branch": DevBranch, "terminal": "BR0117T1", "teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000125",
	}
}

// mailerFiles returns the mailers in the spool by file name.
func (e *env) mailerFiles() map[string]string {
	e.t.Helper()
	ents, err := os.ReadDir(e.spool.Dir())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, en := range ents {
		b, err := os.ReadFile(filepath.Join(e.spool.Dir(), en.Name()))
		if err != nil {
			e.t.Fatal(err)
		}
		out[en.Name()] = string(b)
	}
	return out
}

// noSecret fails if s contains any of the secrets; the message names the
// secret's kind, never the secret.
func noSecret(t *testing.T, where string, s []byte, secrets map[string]string) {
	t.Helper()
	for kind, v := range secrets {
		if v != "" && bytes.Contains(bytes.ToUpper(s), []byte(strings.ToUpper(v))) {
			t.Errorf("%s contains the %s", where, kind)
		}
	}
}

func serialOf(c *certKey) *big.Int { return c.cert.SerialNumber }
