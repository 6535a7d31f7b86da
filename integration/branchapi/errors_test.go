package branchapi

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every malformed request gets its precise problem, repeats no
// PAN or PIN block, and nothing else happens (no issuer request, no event).
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := card(80)
	good := func() map[string]any { return changeBody(t, c.PAN, c.PIN, "4826") }
	with := func(k string, v any) map[string]any {
		b := good()
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	blk := good()["old_pin_block"].(string)
	secrets := map[string]string{"PAN": c.PAN, "PIN block": blk}
	tests := []struct {
		name        string
		who         string
		method      string
		path, tmpl  string
		contentType string
		raw         []byte
		give        map[string]any
		hdr         map[string]string
		wantStatus  int
		wantType    string
		wantPointer string
	}{
		{name: "malformed JSON", raw: []byte(`{"pan": "` + c.PAN + `",`), wantStatus: 400, wantType: "malformed-json"},
		{name: "trailing data", raw: []byte(`{} {}`), wantStatus: 400, wantType: "malformed-json"},
		{name: "not an object", raw: []byte(`["` + c.PAN + `"]`), wantStatus: 400, wantType: "malformed-json"},
		{name: "null", raw: []byte(`null`), wantStatus: 400, wantType: "malformed-json"},
		{name: "unknown field", give: with("pin", "4826"), wantStatus: 400, wantType: "unknown-field", wantPointer: "/pin"},
		{name: "unknown field named like a PAN", give: with(c.PAN, 1), wantStatus: 400, wantType: "unknown-field"},
		{name: "field of another operation", give: with("identity_check_ref", "IDCHK-1"), wantStatus: 400, wantType: "unknown-field", wantPointer: "/identity_check_ref"},
		{name: "wrong content type", contentType: "text/plain", give: good(), wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "no content type", contentType: "-", give: good(), wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "latin-1", contentType: "application/json; charset=iso-8859-1", give: good(), wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "gzip body", give: good(), hdr: map[string]string{"Content-Encoding": "gzip"}, wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "gzip among codings", give: good(), hdr: map[string]string{"Content-Encoding": "identity, gzip"}, wantStatus: 415, wantType: "unsupported-media-type"},
		{name: "oversized body", raw: append([]byte(`{"pan":"`), bytes.Repeat([]byte("1"), DefaultMaxBodyBytes)...), wantStatus: 413, wantType: "body-too-large"},
		{name: "missing PAN", give: with("pan", nil), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pan"},
		{name: "PAN with letters", give: with("pan", c.PAN[:10]+"AB"+c.PAN[12:]), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pan"},
		{name: "12-digit PAN (its event could not mask it)", give: with("pan", c.PAN[:12]), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pan"},
		{name: "PAN as a number", give: with("pan", 6228481200000017), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pan"},
		{name: "terminal too long", give: with("terminal", "BR0117T12"), wantStatus: 422, wantType: "invalid-request", wantPointer: "/terminal"},
		{name: "format 2", give: with("pin_format", 2), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pin_format"},
		{name: "format as a string", give: with("pin_format", "4"), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pin_format"},
		{name: "key index out of range", give: with("key_index", 100), wantStatus: 422, wantType: "invalid-request", wantPointer: "/key_index"},
		{name: "PIN block too short", give: with("new_pin_block", blk[:16]), wantStatus: 422, wantType: "invalid-pin-block", wantPointer: "/new_pin_block"},
		{name: "PIN block too long", give: with("new_pin_block", blk+"00"), wantStatus: 422, wantType: "invalid-pin-block", wantPointer: "/new_pin_block"},
		{name: "PIN block not hex", give: with("old_pin_block", "Z"+blk[1:]), wantStatus: 422, wantType: "invalid-pin-block", wantPointer: "/old_pin_block"},
		{name: "format 0 block length for format 4", give: with("pin_format", 0), wantStatus: 422, wantType: "invalid-pin-block", wantPointer: "/old_pin_block"},
		{name: "format not permitted", give: func() map[string]any {
			b := with("pin_format", 0)
			b["old_pin_block"], b["new_pin_block"] = blk[:16], blk[16:]
			return b
		}(), wantStatus: 422, wantType: "pin-block-format-not-permitted", wantPointer: "/pin_format"},
		{name: "unknown key index", give: with("key_index", 7), wantStatus: 422, wantType: "unknown-key-index", wantPointer: "/key_index"},
		{name: "another branch", give: with("branch", "BR0200"), wantStatus: 403, wantType: "branch-not-permitted"},
		{name: "identity ref that is an ID number", path: pathUnblocks, give: func() map[string]any {
			b := unblockBody(c.PAN)
			b["identity_check_ref"] = "11010519491231002X"
			return b
		}(), wantStatus: 422, wantType: "invalid-request", wantPointer: "/identity_check_ref"},
		{name: "reset without mode", path: pathResets, give: func() map[string]any {
			b := resetBody(t, c.PAN, "4826")
			delete(b, "mode")
			return b
		}(), wantStatus: 422, wantType: "invalid-request", wantPointer: "/mode"},
		{name: "generated reset with a PIN block", path: pathResets, give: func() map[string]any {
			b := generatedBody(c.PAN, 0)
			b["new_pin_block"] = blk
			return b
		}(), wantStatus: 400, wantType: "unknown-field", wantPointer: "/new_pin_block"},
		{name: "generated PIN too short", path: pathResets, give: generatedBody(c.PAN, 3), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pin_length"},
		{name: "bad idempotency key", give: good(), hdr: map[string]string{"Idempotency-Key": "has space"}, wantStatus: 400, wantType: "idempotency-key-invalid"},
		{name: "wrong method", method: http.MethodGet, wantStatus: 405, wantType: "method-not-allowed"},
		{name: "unknown path", path: "/v1/pin/" + c.PAN, tmpl: "/v1/pin/{pan}", method: http.MethodGet, wantStatus: 404, wantType: "not-found"},
		{name: "path cleaning is not done", path: "/v1//pin/changes", tmpl: "/v1//pin/changes", wantStatus: 404, wantType: "not-found", give: good()},
		{name: "unknown operation", path: "/v1/operations/00000000-0000-4000-8000-000000000000", tmpl: tmplOp, method: http.MethodGet, wantStatus: 404, wantType: "not-found"},
		{name: "operation id not a UUID", path: "/v1/operations/" + c.PAN, tmpl: "/v1/operations/{pan}", method: http.MethodGet, wantStatus: 404, wantType: "not-found"},
		{name: "approval without decision", path: "/v1/operations/00000000-0000-4000-8000-000000000000/approval", tmpl: tmplApproval, who: "supervisor", raw: []byte(`{}`), wantStatus: 422, wantType: "invalid-request", wantPointer: "/decision"},
		{name: "approval of an unknown operation", path: "/v1/operations/00000000-0000-4000-8000-000000000000/approval", tmpl: tmplApproval, who: "supervisor", give: approve(DecisionApprove), wantStatus: 404, wantType: "not-found"},
	}
	before := e.sim.Requests.Load()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			path, tmpl, method, who := tt.path, tt.tmpl, tt.method, tt.who
			if path == "" {
				path = pathChanges
			}
			if tmpl == "" {
				tmpl = path
			}
			if method == "" {
				method = http.MethodPost
			}
			if who == "" {
				who = "teller"
			}
			body := tt.raw
			if tt.give != nil {
				body = mustJSON(t, tt.give)
			}
			req, err := http.NewRequest(method, e.url(path), bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := e.client(who).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := response{status: resp.StatusCode, header: resp.Header, body: b}
			checkContract(t, method, tmpl, r)
			p := r.problem(t)
			if r.status != tt.wantStatus || p.Type != ProblemTypeBase+tt.wantType || p.Status != r.status {
				t.Errorf("%s = %d %s (status field %d), want %d %s", tt.name, r.status, p.Type, p.Status, tt.wantStatus, tt.wantType)
			}
			if tt.wantPointer != "" && (len(p.Errors) == 0 || p.Errors[0].Pointer != tt.wantPointer) {
				t.Errorf("%s errors = %+v, want the pointer %s", tt.name, p.Errors, tt.wantPointer)
			}
			if tt.wantStatus == 405 && resp.Header.Get("Allow") != "POST" {
				t.Errorf("405 Allow = %q, want POST", resp.Header.Get("Allow"))
			}
			noSecret(t, "the problem", b, secrets)
		})
	}
	e.t = t
	if got := e.sim.Requests.Load(); got != before {
		t.Errorf("bad requests reached the issuer %d times", got-before)
	}
	if n := len(e.events()); n != 0 {
		t.Errorf("bad requests left %d events", n)
	}
	noSecret(t, "the log", []byte(e.logs.String()), secrets)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOtherInstitutionSeesNothing(t *testing.T) {
	e := newEnv(t, envOptions{})
	res := e.post("teller", pathUnblocks, pathUnblocks, unblockBody(card(81).PAN), nil).result(t)
	r := e.do("teller-other-inst", http.MethodGet, "/v1/operations/"+res.OperationID, tmplOp, nil, nil)
	if p := r.problem(t); r.status != http.StatusNotFound || p.Type != ProblemTypeBase+"not-found" {
		t.Errorf("another institution's lookup = %d %s, want 404", r.status, p.Type)
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do("kiosk", http.MethodGet, "/v1/openapi.yaml", "/v1/openapi.yaml", nil, nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, OpenAPI()) || r.header.Get("Content-Type") != "application/yaml" {
		t.Errorf("GET /v1/openapi.yaml = %d %s, want 200 application/yaml with the embedded document", r.status, r.header.Get("Content-Type"))
	}
}

// TestMutualTLS: without a valid certificate a client gets the TLS alert and
// no HTTP answer at all.
func TestMutualTLS(t *testing.T) {
	now := time.Now()
	var revoked, listed *certKey
	e := newEnv(t, envOptions{
		clientCA: func(e *env) {
			other, err := newCA("another CA", now)
			if err != nil {
				t.Fatal(err)
			}
			teller, _ := parseSubject(DevIdentities(testAcquirer)[0].Client.Subject)
			e.addClient("other-ca", other, teller, now, now.Add(time.Hour))
			e.addClient("expired", e.ca, teller, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
			e.addClient("not-yet-valid", e.ca, teller, now.Add(24*time.Hour), now.Add(48*time.Hour))
			revoked = e.addClient("revoked-crl", e.ca, teller, now, now.Add(time.Hour))
			listed = e.addClient("revoked-listed", e.ca, teller, now, now.Add(time.Hour))
			e.addClient("unknown-subject", e.ca, pkix.Name{CommonName: "stranger", Organization: []string{devOrganization}}, now, now.Add(time.Hour))
			crl, err := e.ca.crl(now, serialOf(revoked))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(e.dir, "branch.crl"), crl, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		mutate: func(c *Config) {
			c.TLS.CRLFile = filepath.Join(filepath.Dir(c.TLS.ClientCAFile), "branch.crl")
			c.TLS.RevokedSerials = []string{serialOf(listed).Text(16)}
		},
	})

	for _, who := range []string{"", "other-ca", "expired", "not-yet-valid", "revoked-crl", "revoked-listed", "unknown-subject"} {
		name := who
		if name == "" {
			name = "no certificate"
		}
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.url("/v1/openapi.yaml"), nil)
			resp, err := e.client(who).Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET as %s = %d, want a TLS failure and no HTTP answer", name, resp.StatusCode)
			}
			var alert tls.AlertError
			var recErr tls.RecordHeaderError
			if !errors.As(err, &alert) && !strings.Contains(err.Error(), "tls") && !errors.As(err, &recErr) {
				t.Errorf("GET as %s failed with %v, want a TLS error", name, err)
			}
		})
	}
	// A good certificate still works, on TLS 1.3 by default and on TLS 1.2.
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cl := e.client("teller")
		cl.Transport.(*http.Transport).TLSClientConfig.MaxVersion = v
		resp, err := cl.Get(e.url("/v1/openapi.yaml"))
		if err != nil {
			t.Fatalf("GET with TLS max %x: %v", v, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS.Version != v {
			t.Errorf("GET with TLS max %x = %d over %x", v, resp.StatusCode, resp.TLS.Version)
		}
	}
	// TLS 1.1 is refused.
	cl := e.client("teller")
	cl.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	cl.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	if resp, err := cl.Get(e.url("/v1/openapi.yaml")); err == nil {
		resp.Body.Close()
		t.Errorf("TLS 1.1 client got %d, want a handshake failure", resp.StatusCode)
	}
}

// TestSlowClients: a client that stalls in its headers or its body is cut
// off by the server's timeouts while another client is served.
func TestSlowClients(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *Config) {
		c.ReadHeaderTimeout, c.ReadTimeout = 300*time.Millisecond, 600*time.Millisecond
	}})
	dial := func() *tls.Conn {
		pool := x509.NewCertPool()
		pool.AddCert(e.ca.cert)
		cert := e.certs["teller"]
		conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	// Stalled in the headers: the connection is closed without an answer.
	hdr := dial()
	defer hdr.Close()
	if _, err := io.WriteString(hdr, "POST /v1/pin/unblocks HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	// Stalled in the body: answered 408, or closed.
	body := dial()
	defer body.Close()
	if _, err := io.WriteString(body, "POST /v1/pin/unblocks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pan\":"); err != nil {
		t.Fatal(err)
	}
	// Meanwhile another client is served.
	served := unblockBody(card(82).PAN)
	served["teller"] = "T0117-08"
	if r := e.post("teller2", pathUnblocks, pathUnblocks, served, nil); r.status != 200 {
		t.Errorf("a client beside two stalled ones = %d, want 200", r.status)
	}
	_ = hdr.SetReadDeadline(time.Now().Add(20 * time.Second))
	if b, err := io.ReadAll(hdr); len(b) != 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 408")) {
		t.Errorf("stalled headers got %q (%v), want the connection closed", b, err)
	}
	_ = body.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(body), nil)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := response{status: resp.StatusCode, header: resp.Header, body: b}
		checkContract(t, http.MethodPost, pathUnblocks, r)
		if p := r.problem(t); resp.StatusCode != http.StatusRequestTimeout || p.Type != ProblemTypeBase+"request-timeout" {
			t.Errorf("stalled body = %d %s, want 408 request-timeout", resp.StatusCode, p.Type)
		}
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("stalled body: the server neither answered nor closed the connection")
	}
	if n := len(e.events()); n != 1 {
		t.Errorf("%d events, want only the served client's", n)
	}
}

// TestStrictJSON: a member given twice is refused (last-one-wins would act
// on the second card), null is no field's value, and an integer may be
// written 1.0 as JSON Schema allows: the checks and the contract agree.
func TestStrictJSON(t *testing.T) {
	e := newEnv(t, envOptions{dualControl: true})
	before := e.sim.Requests.Load()
	marshal := func(v map[string]any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, b := card(110), card(111)
	refusals := []struct {
		name, path, tmpl string
		raw              string
		wantStatus       int
		wantType         string
		wantPointer      string
	}{
		{name: "two pan members", path: pathUnblocks, raw: `{"pan":"` + a.PAN + `",` + marshal(unblockBody(b.PAN))[1:], wantStatus: 400, wantType: "malformed-json", wantPointer: "/pan"},
		{name: "two teller members", path: pathChanges, raw: `{"teller":"T0117-08",` + marshal(changeBody(t, a.PAN, a.PIN, "4826"))[1:], wantStatus: 400, wantType: "malformed-json", wantPointer: "/teller"},
		{name: "a member twice in a nested value", path: pathUnblocks, raw: strings.Replace(marshal(unblockBody(a.PAN)), `"teller":"T0117-07"`, `"teller":{"x":1,"x":2}`, 1), wantStatus: 400, wantType: "malformed-json", wantPointer: "/x"},
		{name: "teller null", path: pathChanges, raw: strings.Replace(marshal(changeBody(t, a.PAN, a.PIN, "4826")), `"teller":"T0117-07"`, `"teller":null`, 1), wantStatus: 422, wantType: "invalid-request", wantPointer: "/teller"},
		{name: "pin_length null", path: pathResets, raw: strings.Replace(marshal(generatedBody(a.PAN, 6)), `"pin_length":6`, `"pin_length":null`, 1), wantStatus: 422, wantType: "invalid-request", wantPointer: "/pin_length"},
		{name: "key_index 1.5", path: pathChanges, raw: strings.Replace(marshal(changeBody(t, a.PAN, a.PIN, "4826")), `"key_index":1`, `"key_index":1.5`, 1), wantStatus: 422, wantType: "invalid-request", wantPointer: "/key_index"},
		{name: "two decision members", path: "/v1/operations/00000000-0000-4000-8000-000000000000/approval", tmpl: tmplApproval, raw: `{"decision":"refuse","decision":"approve"}`, wantStatus: 400, wantType: "malformed-json", wantPointer: "/decision"},
	}
	for _, tt := range refusals {
		tmpl := tt.tmpl
		if tmpl == "" {
			tmpl = tt.path
		}
		who := "teller"
		if tmpl == tmplApproval {
			who = "supervisor"
		}
		r := e.do(who, http.MethodPost, tt.path, tmpl, []byte(tt.raw), nil)
		p := r.problem(t)
		if r.status != tt.wantStatus || p.Type != ProblemTypeBase+tt.wantType || len(p.Errors) != 1 || p.Errors[0].Pointer != tt.wantPointer {
			t.Errorf("%s = %d %s %+v, want %d %s at %s", tt.name, r.status, p.Type, p.Errors, tt.wantStatus, tt.wantType, tt.wantPointer)
		}
		noSecret(t, tt.name, r.body, map[string]string{"PAN": a.PAN, "other PAN": b.PAN})
	}
	if got := e.sim.Requests.Load(); got != before {
		t.Fatalf("%d refused requests reached the issuer", got-before)
	}
	// key_index 1.0 is the integer 1 (JSON Schema's integer): served.
	raw := strings.Replace(marshal(changeBody(t, a.PAN, a.PIN, "4826")), `"key_index":1`, `"key_index":1.0`, 1)
	if res := e.do("teller", http.MethodPost, pathChanges, pathChanges, []byte(raw), nil).result(t); res.ResponseCode != "00" {
		t.Errorf("change with key_index 1.0 = %s, want 00", res.ResponseCode)
	}
}

// TestMaxConnsHoldsTheRestInTheBacklog: with every connection slot held by
// an idle client, a new client waits unanswered in the backlog, and is
// served as soon as a slot frees.
func TestMaxConnsHoldsTheRestInTheBacklog(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *Config) { c.MaxConns = 2 }})
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	done := make(chan int, 1)
	go func() {
		served := unblockBody(card(83).PAN)
		served["teller"] = "T0117-08"
		done <- e.post("teller2", pathUnblocks, pathUnblocks, served, nil).status
	}()
	select {
	case st := <-done:
		t.Fatalf("a third client was answered %d while two idle clients held both slots", st)
	case <-time.After(500 * time.Millisecond):
	}
	if n := len(e.events()); n != 0 {
		t.Errorf("%d events while the third client waited, want 0", n)
	}
	idle[0].Close()
	select {
	case st := <-done:
		if st != 200 {
			t.Errorf("the waiting client = %d once a slot freed, want 200", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting client was not served after a slot freed")
	}
}

// TestRefusalsBeforeTheAPI: the two answers Go's HTTP server gives before
// the API sees a request are as docs/branch-api.md says: 431 for a header
// section over 16 KiB, 400 for a request that is not HTTP/1.1, 501 for a
// transfer coding other than chunked, each plain text, and none reaches the
// flow.
func TestRefusalsBeforeTheAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.cert)
	cert := e.certs["teller"]
	for _, tt := range []struct {
		name, req  string
		wantStatus int
	}{
		{"header section over 16 KiB", "POST /v1/pin/unblocks HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", 431},
		{"not HTTP/1.1", "POST /v1/pin/unblocks HTTP/9.9 extra\r\nHost: x\r\n\r\n", 400},
		{"a transfer coding other than chunked", "POST /v1/pin/unblocks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tt.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !resp.Close {
				t.Errorf("answer %d %q (closed %v), want %d text/plain and the connection closed",
					resp.StatusCode, resp.Header.Get("Content-Type"), resp.Close, tt.wantStatus)
			}
		})
	}
	if n := e.sim.Requests.Load(); n != 0 {
		t.Errorf("%d issuer requests, want none", n)
	}
}
