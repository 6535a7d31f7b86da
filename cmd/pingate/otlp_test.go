package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"pingate/integration/branchapi"
	"pingate/integration/gateway"
	"pingate/integration/loadgen"
	"pingate/integration/testservers"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// The trace export of the built `pingate serve` as a bank's collector sees
// it: scripts/otlp_receiver.py, an OTLP/HTTP receiver written with the
// opentelemetry-proto package (PyPI) and Python's http.server, not with the
// Go SDK the gateway exports with, records every span it is sent; the tests
// compare them with what docs/configuration.md (telemetry.*), docs/events.md,
// docs/branch-api.md and docs/operations.md promise. scripts/test-deps.sh
// installs the library; without it the tests skip, and fail under CI=true.

// otlpSpan is one line of the receiver's output.
type otlpSpan struct {
	TraceID         string            `json:"trace_id"`
	SpanID          string            `json:"span_id"`
	ParentSpanID    string            `json:"parent_span_id"`
	Name            string            `json:"name"`
	Kind            string            `json:"kind"`
	Attributes      map[string]any    `json:"attributes"`
	Events          []otlpEvent       `json:"events"`
	Resource        map[string]any    `json:"resource"`
	Scope           string            `json:"scope"`
	Status          map[string]string `json:"status"`
	ContentType     string            `json:"content_type"`
	ContentEncoding string            `json:"content_encoding"`
}

type otlpEvent struct {
	Name       string         `json:"name"`
	Attributes map[string]any `json:"attributes"`
}

func (s otlpSpan) attr(k string) string {
	v, ok := s.Attributes[k]
	if !ok {
		return ""
	}
	return fmt.Sprint(v)
}

// otlpReceiver is a running scripts/otlp_receiver.py.
type otlpReceiver struct {
	addr string
	out  string
	cmd  *exec.Cmd
}

// startOTLPReceiver starts the receiver on a free loopback port with extra
// flags (--delay, --status); t.Cleanup kills it.
func startOTLPReceiver(t *testing.T, py string, extra ...string) *otlpReceiver {
	t.Helper()
	script, _ := filepath.Abs("../../scripts/otlp_receiver.py")
	out := filepath.Join(t.TempDir(), "spans.jsonl")
	cmd := exec.Command(py, append([]string{script, "--addr", "127.0.0.1:0", "--out", out}, extra...)...)
	cmd.Dir = "/" // not the repo: its iso8583/ directory would shadow a library
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-lines:
		addr, found := strings.CutPrefix(l, "listening ")
		if !ok || !found {
			t.Fatalf("otlp receiver printed %q\n%s", l, stderr.String())
		}
		return &otlpReceiver{addr: addr, out: out, cmd: cmd}
	case <-time.After(20 * time.Second):
		t.Fatalf("otlp receiver did not start\n%s", stderr.String())
	}
	return nil
}

// spans returns every span received so far.
func (r *otlpReceiver) spans(t *testing.T) []otlpSpan {
	t.Helper()
	raw, err := os.ReadFile(r.out)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var all []otlpSpan
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var s otlpSpan
		if err := json.Unmarshal(l, &s); err != nil {
			t.Fatalf("receiver line %q: %v", l, err)
		}
		all = append(all, s)
	}
	return all
}

// waitSpans polls until done is true of the spans received, for at most 20 s
// (the SDK's batcher exports every 5 s).
func (r *otlpReceiver) waitSpans(t *testing.T, what string, done func([]otlpSpan) bool) []otlpSpan {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := r.spans(t)
		if done(all) {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver has no %s after 20s (%d spans: %v)", what, len(all), spanNames(all))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func spanNames(spans []otlpSpan) []string {
	names := make([]string, len(spans))
	for i, s := range spans {
		names[i] = s.TraceID[:8] + ":" + s.Name
	}
	return names
}

// traceOf returns the spans of trace id.
func traceOf(spans []otlpSpan, id string) []otlpSpan {
	var out []otlpSpan
	for _, s := range spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	return out
}

// byName returns the first span called name, or ok false.
func byName(spans []otlpSpan, name string) (otlpSpan, bool) {
	for _, s := range spans {
		if s.Name == name {
			return s, true
		}
	}
	return otlpSpan{}, false
}

// otelServeConfig writes a serve config for the built binary: the embedded
// default's acquirers, development keys and in-process issuer simulator,
// the branch API on branchAddr with development certificates under dir,
// listeners on free loopback ports, and telemetry as given (YAML flow
// mapping body, e.g. `otlp_endpoint: "127.0.0.1:4318"`) and events (more
// keys of the events mapping, each after ", ").
func otelServeConfig(t *testing.T, dir, telemetry, events, branchAddr string, grace time.Duration) string {
	t.Helper()
	text := fmt.Sprintf(`instance: otel-audit
acquirer_listener: {addr: "127.0.0.1:0", shutdown_grace: %s}
http: {addr: "127.0.0.1:0"}
admin: {addr: "127.0.0.1:0"}
security: {dev_keys: true}
routing:
  institution: "999001"
  acquirers:
    - {id: "100001", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk}, zmk: dev-atm-zmk, formats: [0, 3]}
    - {id: "200001", channel: branch, terminals: ["*"], keys: {1: dev-branch-zpk}, formats: [4]}
  issuers:
    - {id: ssbank, institution: "300001", hosts: ["issuer-sim"], pin_format: 4, key: dev-issuer-zpk, key_index: 1}
  routes:
    - {prefix: "62284812", issuer: ssbank}
    - {prefix: "62284813", issuer: ssbank}
    - {prefix: "621700", issuer: ssbank}
issuer_sim: {addr: "127.0.0.1:0", seed: 1, bins: ["62284812", "62284813", "621700"], per_bin: 10000}
limits: {backend: memory, acquirer_rps: 5000, acquirer_burst: 5000}
events: {journal_dir: %q%s}
reversals: {dir: %q}
telemetry: {%s}
log: {format: json, level: info}
branch: {enabled: true, addr: %q, dev_cert_dir: %q}
`, grace, filepath.Join(dir, "journal"), events, filepath.Join(dir, "reversals"), telemetry, branchAddr, filepath.Join(dir, "dev-certs"))
	p := filepath.Join(dir, "pingate.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// otelGateway is a running `pingate serve` on otelServeConfig.
type otelGateway struct {
	proc                  *opsProc
	acq, http, admin, dir string
	branch                gateway.BranchInfo
	secrets               []string // every PAN, PIN and PIN block sent, as sent
	secretsMu             sync.Mutex
}

func startOTelGateway(t *testing.T, telemetry string, grace time.Duration) *otelGateway {
	t.Helper()
	return startOTelGatewayEvents(t, telemetry, "", grace)
}

func startOTelGatewayEvents(t *testing.T, telemetry, events string, grace time.Duration) *otelGateway {
	t.Helper()
	dir := t.TempDir()
	branchAddr := freeAddr(t)
	cfg := otelServeConfig(t, dir, telemetry, events, branchAddr, grace)
	p := opsStart(t, "serve", "--config", cfg)
	acq, httpAddr, admin := servingAddrs(t, p.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)
	return &otelGateway{proc: p, acq: acq, http: httpAddr, admin: admin, dir: dir,
		branch: gateway.BranchInfo{Addr: branchAddr, CertDir: filepath.Join(dir, "dev-certs")}}
}

func (g *otelGateway) secret(s ...string) {
	g.secretsMu.Lock()
	defer g.secretsMu.Unlock()
	g.secrets = append(g.secrets, s...)
}

// atm sends op on c and returns its answer's code; the PAN, PINs and PIN
// blocks go to g.secrets.
func (g *otelGateway) atm(t *testing.T, c *loadgen.Client, op loadgen.Op) string {
	t.Helper()
	_, code := g.atmSend(t, c, op)
	return code
}

// atmSend is atm that also returns the request it sent.
func (g *otelGateway) atmSend(t *testing.T, c *loadgen.Client, op loadgen.Op) (*iso8583.Fields, string) {
	t.Helper()
	f, err := op.Fields()
	if err != nil {
		t.Fatal(err)
	}
	g.secret(op.PAN, op.OldPIN, op.NewPIN, hex.EncodeToString(f.PINBlock), hex.EncodeToString(f.NewPINBlock))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ans, err := c.Do(ctx, f)
	if err != nil {
		t.Fatalf("%s at %s: %v", op.Proc, op.Terminal, err)
	}
	return f, ans.ResponseCode
}

// branchPost posts body to path as who ("teller", "supervisor") with a
// traceparent header when tp is not empty, and returns the status and the
// decoded answer.
func (g *otelGateway) branchPost(t *testing.T, who, path, tp string, body map[string]any) (int, branchapi.OperationResult) {
	t.Helper()
	c, err := newBranchClient(g.branch, who)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tp != "" {
		req.Header.Set("traceparent", tp)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var res branchapi.OperationResult
	_ = json.Unmarshal(raw, &res)
	return resp.StatusCode, res
}

// branchPINBlock is a format 4 PIN block of pin for pan under the branch
// PIN pads' development key, as a teller system sends it.
func (g *otelGateway) branchPINBlock(t *testing.T, pin, pan string) string {
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
	s := fmt.Sprintf("%X", b)
	g.secret(pan, pin, s)
	return s
}

// events returns the newest n outcome events of the journal (GET
// /admin/events), as `pingate events tail --admin` reads them.
func (g *otelGateway) events(t *testing.T, n int) []map[string]any {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/admin/events?n=%d", g.admin, n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var evs []map[string]any
	if err := json.Unmarshal(raw, &evs); err != nil {
		t.Fatalf("GET /admin/events = %d %s: %v", resp.StatusCode, raw, err)
	}
	return evs
}

// eventOf returns the newest event of terminal with ce_type typ.
func eventOf(t *testing.T, evs []map[string]any, terminal, typ string) map[string]any {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i]["terminal"] == terminal && evs[i]["type"] == typ {
			return evs[i]
		}
	}
	t.Fatalf("no %s event of terminal %s in %d events", typ, terminal, len(evs))
	return nil
}

// eventOfTerminal returns the newest event of terminal.
func eventOfTerminal(t *testing.T, evs []map[string]any, terminal string) map[string]any {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i]["terminal"] == terminal {
			return evs[i]
		}
	}
	t.Fatalf("no event of terminal %s in %d events", terminal, len(evs))
	return nil
}

// logLine returns the first JSON log line of stderr that match accepts.
func logLine(t *testing.T, stderr string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for _, l := range strings.Split(stderr, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && match(m) {
			return m
		}
	}
	t.Fatalf("no such log line in:\n%s", opsTail(stderr, 3000))
	return nil
}

// checkNoSecrets fails for any span name, attribute (key or value), event
// or resource attribute that carries a PAN, PIN or PIN block sent, looks
// like a card number (12–19 digits) or like key or PIN block material (16
// or more hex digits that are not the span's own ids).
func checkNoSecrets(t *testing.T, spans []otlpSpan, secrets []string) {
	t.Helper()
	panLike := regexp.MustCompile(`\d{12,19}`)
	hexLike := regexp.MustCompile(`(?i)[0-9a-f]{16,}`)
	look := func(where, v string) {
		up := strings.ToUpper(v)
		for _, s := range secrets {
			if len(s) >= 4 && strings.Contains(up, strings.ToUpper(s)) && (len(s) > 4 || up == s) {
				t.Errorf("%s = %q carries a PAN, PIN or PIN block the test sent", where, v)
			}
		}
		if panLike.MatchString(v) {
			t.Errorf("%s = %q looks like a card number", where, v)
		}
		if hexLike.MatchString(strings.ReplaceAll(v, "-", "")) && !isUUIDOrTrace(v) {
			t.Errorf("%s = %q looks like key or PIN block material", where, v)
		}
	}
	for _, s := range spans {
		look("span name", s.Name)
		for k, v := range s.Attributes {
			look("span "+s.Name+" attribute "+k, fmt.Sprint(v))
		}
		for _, e := range s.Events {
			look("span "+s.Name+" event", e.Name)
			for k, v := range e.Attributes {
				look("span "+s.Name+" event "+e.Name+" attribute "+k, fmt.Sprint(v))
			}
		}
		for k, v := range s.Resource {
			look("resource attribute "+k, fmt.Sprint(v))
		}
		look("span "+s.Name+" status", s.Status["message"])
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// isUUIDOrTrace: an operation or request id (UUID) is not key material.
func isUUIDOrTrace(v string) bool { return uuidRE.MatchString(v) }

// checkTree fails unless trace is one tree: one root, every other span's
// parent a span of the same trace.
func checkTree(t *testing.T, what string, trace []otlpSpan, wantRootParent string) {
	t.Helper()
	ids := map[string]bool{}
	for _, s := range trace {
		ids[s.SpanID] = true
	}
	roots := 0
	for _, s := range trace {
		switch {
		case s.ParentSpanID == wantRootParent:
			roots++
		case !ids[s.ParentSpanID]:
			t.Errorf("%s: span %s has parent %s, no span of the trace", what, s.Name, s.ParentSpanID)
		}
	}
	if roots != 1 {
		t.Errorf("%s: %d spans with parent %q, want one root (%v)", what, roots, wantRootParent, spanNames(trace))
	}
}

// TestOTLPExportPy: with telemetry.otlp_endpoint set (sample_ratio default
// 1), an ATM PIN change over TCP is one trace from the acquirer frame to the
// journal; a branch unblock over HTTPS with a caller's traceparent joins
// the caller's trace; a dual-control reset runs in the approval's trace. The
// journal's events carry the trace ids the collector got; every span
// carries the resource service.name pingate and service.instance.id the
// instance name; no span carries a PAN, PIN or PIN block.
func TestOTLPExportPy(t *testing.T) {
	py := needPython(t, "import opentelemetry.proto.collector.trace.v1.trace_service_pb2", "opentelemetry-proto")
	rcv := startOTLPReceiver(t, py)
	g := startOTelGateway(t, fmt.Sprintf("otlp_endpoint: %q", rcv.addr), 10*time.Second)
	pop := embeddedPopulation()
	c, err := loadgen.Dial(context.Background(), g.acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	card := pop.Card(4100)
	cf, code := g.atmSend(t, c, atmChange(card.PAN, "OTLPATM1", card.PIN, "4826"))
	if code != "00" {
		t.Fatalf("ATM change answered %s", code)
	}
	// The ATM reverses it: the reversal event's trace is the 0420's
	// (docs/events.md).
	rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	ans, err := c.Do(rctx, reversalAdvice(t, cf))
	cancel()
	if err != nil || ans.ResponseCode != "00" {
		t.Fatalf("0420 = %v, %v; want 0430 00", ans, err)
	}

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerTP := "00-" + callerTrace + "-00f067aa0ba902b7-01"
	unblockPAN := pop.Card(4101).PAN
	g.secret(unblockPAN)
	status, unblock := g.branchPost(t, "teller", "/v1/pin/unblocks", callerTP, map[string]any{"pan": unblockPAN,
		"branch": branchapi.DevBranch, "terminal": "OTLPBR01", "teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000401"})
	if status != http.StatusOK || unblock.ResponseCode != "00" {
		t.Fatalf("branch unblock = %d %s", status, unblock.ResponseCode)
	}

	resetPAN := pop.Card(4102).PAN
	const submitTrace, approveTrace = "11f92f3577b34da6a3ce929d0e0e4736", "22f92f3577b34da6a3ce929d0e0e4736"
	status, reset := g.branchPost(t, "teller", "/v1/pin/resets", "00-"+submitTrace+"-00f067aa0ba902b7-01", map[string]any{
		"pan": resetPAN, "branch": branchapi.DevBranch, "terminal": "OTLPBR02", "teller": "T0117-07",
		"identity_check_ref": "IDCHK-2026-000402", "mode": "pin_pad", "pin_format": 4, "key_index": 1,
		"new_pin_block": g.branchPINBlock(t, "3917", resetPAN)})
	if status != http.StatusAccepted {
		t.Fatalf("branch reset = %d, want 202 pending approval", status)
	}
	status, approved := g.branchPost(t, "supervisor", "/v1/operations/"+reset.OperationID+"/approval",
		"00-"+approveTrace+"-00f067aa0ba902b8-01", map[string]any{"decision": "approve"})
	if status != http.StatusOK || approved.ResponseCode != "00" {
		t.Fatalf("approval = %d %s", status, approved.ResponseCode)
	}

	evs := g.events(t, 20)
	atmEv := eventOf(t, evs, "OTLPATM1", "pingate.pin.changed.v1")
	revEv := eventOf(t, evs, "OTLPATM1", "pingate.pin.change.reversed.v1")
	revTrace, _ := revEv["trace_id"].(string)
	atmTrace, _ := atmEv["trace_id"].(string)
	if len(atmTrace) != 32 {
		t.Fatalf("ATM event trace_id = %v, want 32 hex digits", atmEv["trace_id"])
	}
	want := map[string]string{ // name → kind
		"pingate.acquirer.frame": "SPAN_KIND_SERVER", "pingate.acquirer.message": "SPAN_KIND_INTERNAL",
		"pingate.pin.change": "SPAN_KIND_INTERNAL", "pingate.limiter": "SPAN_KIND_INTERNAL",
		"pingate.hsm.translate": "SPAN_KIND_INTERNAL", "pingate.issuer.roundtrip": "SPAN_KIND_CLIENT",
		"pingate.journal.append": "SPAN_KIND_INTERNAL",
	}
	all := rcv.waitSpans(t, "ATM and branch traces", func(s []otlpSpan) bool {
		_, a := byName(traceOf(s, atmTrace), "pingate.journal.append")
		_, b := byName(traceOf(s, callerTrace), "pingate.journal.append")
		_, r := byName(traceOf(s, approveTrace), "pingate.journal.append")
		_, v := byName(traceOf(s, revTrace), "pingate.pin.reversal")
		return a && b && r && v
	})
	rev := traceOf(all, revTrace)
	checkTree(t, "0420 trace", rev, "")
	if m, ok := byName(rev, "pingate.acquirer.message"); !ok || m.attr("iso8583.mti") != "0420" || revTrace == atmTrace {
		t.Errorf("reversal event's trace %s (the change's %s): message span %+v, want its own trace, the 0420's", revTrace, atmTrace, m)
	}
	if r, _ := byName(rev, "pingate.pin.reversal"); r.attr("pingate.reversal.result") != "reversed" {
		t.Errorf("pingate.pin.reversal result = %q, want reversed", r.attr("pingate.reversal.result"))
	}

	// The ATM change: one trace, the documented spans, one root (the frame).
	atmSpans := traceOf(all, atmTrace)
	for name, kind := range want {
		s, ok := byName(atmSpans, name)
		if !ok {
			t.Errorf("ATM trace %s lacks span %s (has %v)", atmTrace, name, spanNames(atmSpans))
			continue
		}
		if s.Kind != kind {
			t.Errorf("span %s kind = %s, want %s", name, s.Kind, kind)
		}
	}
	checkTree(t, "ATM trace", atmSpans, "")
	if m, ok := byName(atmSpans, "pingate.acquirer.message"); ok {
		for k, v := range map[string]string{"iso8583.mti": "0100", "iso8583.processing_code": "700000", "iso8583.response_code": "00", "pingate.acquirer": "100001"} {
			if m.attr(k) != v {
				t.Errorf("pingate.acquirer.message %s = %q, want %q", k, m.attr(k), v)
			}
		}
	}
	if p, ok := byName(atmSpans, "pingate.pin.change"); ok {
		for k, v := range map[string]string{"pingate.channel": "atm", "pingate.operation": "change", "pingate.outcome": "approved", "iso8583.response_code": "00"} {
			if p.attr(k) != v {
				t.Errorf("pingate.pin.change %s = %q, want %q", k, p.attr(k), v)
			}
		}
	}

	// The branch unblock joined the caller's trace: the API's server span is
	// the child of the caller's span and the parent of the flow's.
	br := traceOf(all, callerTrace)
	checkTree(t, "branch trace", br, "00f067aa0ba902b7")
	srv, ok := byName(br, "POST /v1/pin/unblocks")
	if !ok || srv.Kind != "SPAN_KIND_SERVER" || srv.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("branch trace: server span = %+v, %v; want POST /v1/pin/unblocks, SERVER, child of the caller's span", srv, ok)
	}
	if flow, ok := byName(br, "pingate.pin.unblock"); !ok || flow.ParentSpanID != srv.SpanID {
		t.Errorf("branch trace: pingate.pin.unblock = %+v, %v; want a child of the server span", flow, ok)
	}
	if ev := eventOfTerminal(t, evs, "OTLPBR01"); ev["trace_id"] != callerTrace {
		t.Errorf("branch unblock event trace_id = %v, want the caller's %s", ev["trace_id"], callerTrace)
	}
	// Its log line joins the trace too (docs/operations.md, "Logs": every
	// line written while handling a request carries request_id, trace_id
	// and span_id).
	line := logLine(t, g.proc.stderr.String(), func(l map[string]any) bool {
		return l["msg"] == "branch api request" && l["route"] == "/v1/pin/unblocks"
	})
	if line["trace_id"] != callerTrace || line["span_id"] != srv.SpanID || line["request_id"] == nil ||
		line["request_id"] != srv.attr("pingate.request_id") {
		t.Errorf("branch api request log line = %v; want trace_id %s, span_id %s (the server span) and the span's request_id %q",
			line, callerTrace, srv.SpanID, srv.attr("pingate.request_id"))
	}

	// A dual-control reset: the submission is a trace of its own (one
	// server span, 202); the PIN operation runs when the supervisor
	// approves, in the approval's trace, which its event names.
	sub := traceOf(all, submitTrace)
	if len(sub) != 1 || sub[0].Name != "POST /v1/pin/resets" || sub[0].attr("http.response.status_code") != "202" {
		t.Errorf("reset submission trace = %v, want one POST /v1/pin/resets span answered 202", spanNames(sub))
	}
	ap := traceOf(all, approveTrace)
	checkTree(t, "approval trace", ap, "00f067aa0ba902b8")
	apSrv, _ := byName(ap, "POST /v1/operations/{id}/approval")
	if flow, ok := byName(ap, "pingate.pin.reset"); !ok || flow.ParentSpanID != apSrv.SpanID {
		t.Errorf("approval trace: pingate.pin.reset = %+v, %v; want a child of the approval's server span", flow, ok)
	}
	if ev := eventOfTerminal(t, evs, "OTLPBR02"); ev["trace_id"] != approveTrace {
		t.Errorf("reset event trace_id = %v, want the approval's %s", ev["trace_id"], approveTrace)
	}

	for _, s := range all {
		if s.Resource["service.name"] != "pingate" || s.Resource["service.instance.id"] != "otel-audit" {
			t.Errorf("span %s resource = %v, want service.name pingate, service.instance.id otel-audit", s.Name, s.Resource)
			break
		}
		if s.ContentType != "application/x-protobuf" {
			t.Errorf("export content type %q, want application/x-protobuf (OTLP/HTTP binary)", s.ContentType)
			break
		}
	}
	g.secretsMu.Lock()
	checkNoSecrets(t, all, g.secrets)
	g.secretsMu.Unlock()
}

// TestOTLPSampleRatioZeroPy: with telemetry.sample_ratio 0 and a collector,
// an ATM change exports no span but its event still has a trace id; a
// branch call whose caller sampled its traceparent is exported whatever the
// ratio, and one whose caller did not sample is not.
func TestOTLPSampleRatioZeroPy(t *testing.T) {
	py := needPython(t, "import opentelemetry.proto.collector.trace.v1.trace_service_pb2", "opentelemetry-proto")
	rcv := startOTLPReceiver(t, py)
	g := startOTelGateway(t, fmt.Sprintf("otlp_endpoint: %q, sample_ratio: 0", rcv.addr), 10*time.Second)
	pop := embeddedPopulation()
	c, err := loadgen.Dial(context.Background(), g.acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	card := pop.Card(4200)
	if code := g.atm(t, c, atmChange(card.PAN, "OTLPATM2", card.PIN, "4826")); code != "00" {
		t.Fatalf("ATM change answered %s", code)
	}
	const unsampled, sampled = "33f92f3577b34da6a3ce929d0e0e4736", "44f92f3577b34da6a3ce929d0e0e4736"
	for _, tt := range []struct{ trace, flags, terminal string }{{unsampled, "00", "OTLPBR03"}, {sampled, "01", "OTLPBR04"}} {
		pan := pop.Card(4201).PAN
		if tt.trace == sampled {
			pan = pop.Card(4202).PAN
		}
		status, res := g.branchPost(t, "teller", "/v1/pin/unblocks", "00-"+tt.trace+"-00f067aa0ba902b7-"+tt.flags,
			map[string]any{"pan": pan, "branch": branchapi.DevBranch, "terminal": tt.terminal, "teller": "T0117-07",
				"identity_check_ref": "IDCHK-2026-000403"})
		if status != http.StatusOK || res.ResponseCode != "00" {
			t.Fatalf("branch unblock (flags %s) = %d %s", tt.flags, status, res.ResponseCode)
		}
	}
	all := rcv.waitSpans(t, "the sampled caller's trace", func(s []otlpSpan) bool {
		_, ok := byName(traceOf(s, sampled), "pingate.journal.append")
		return ok
	})
	evs := g.events(t, 10)
	atmTrace, _ := eventOfTerminal(t, evs, "OTLPATM2")["trace_id"].(string)
	if len(atmTrace) != 32 {
		t.Errorf("unsampled ATM event trace_id = %q, want a trace id all the same", atmTrace)
	}
	for _, s := range all {
		if s.TraceID != sampled {
			t.Errorf("span %s of trace %s exported under sample_ratio 0 (only the sampled caller's trace %s may be)", s.Name, s.TraceID, sampled)
		}
	}
	if ev := eventOfTerminal(t, evs, "OTLPBR03"); ev["trace_id"] != unsampled {
		t.Errorf("unsampled caller's event trace_id = %v, want %s", ev["trace_id"], unsampled)
	}
	checkTree(t, "sampled caller's trace", traceOf(all, sampled), "00f067aa0ba902b7")
}

// TestOTLPCollectorSlowOrDownPy: a collector that holds every export, or
// none at all, never delays or fails a PIN request: requests are answered
// 00 at once and every one has its event; and a SIGTERM then stops the
// gateway promptly, exit 0, instead of waiting out the shutdown grace for
// the collector.
func TestOTLPCollectorSlowOrDownPy(t *testing.T) {
	py := needPython(t, "import opentelemetry.proto.collector.trace.v1.trace_service_pb2", "opentelemetry-proto")
	for _, tt := range []struct {
		name string
		slow bool
	}{{"slow", true}, {"down", false}} {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := freeAddr(t) // nothing listens: the collector is down
			if tt.slow {
				endpoint = startOTLPReceiver(t, py, "--delay", "120").addr
			}
			const grace = 20 * time.Second
			g := startOTelGateway(t, fmt.Sprintf("otlp_endpoint: %q", endpoint), grace)
			pop := embeddedPopulation()
			const conns, each = 4, 150
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			slowest := make(chan time.Duration, conns)
			for w := 0; w < conns; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					c, err := loadgen.Dial(context.Background(), g.acq)
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					var worst time.Duration
					for i := 0; i < each; i++ {
						card := pop.Card(4300 + w*each + i)
						op := atmChange(card.PAN, fmt.Sprintf("OTLPS%03d", w*each+i), card.PIN, "4826")
						f, err := op.Fields()
						if err != nil {
							errs <- err
							return
						}
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						start := time.Now()
						ans, err := c.Do(ctx, f)
						cancel()
						if err != nil || ans.ResponseCode != "00" {
							errs <- fmt.Errorf("change %d: %v %v", w*each+i, ans, err)
							return
						}
						worst = max(worst, time.Since(start))
					}
					slowest <- worst
				}(w)
			}
			wg.Wait()
			close(errs)
			close(slowest)
			for err := range errs {
				t.Fatal(err)
			}
			for d := range slowest {
				if d > 2*time.Second {
					t.Errorf("slowest answer took %s with the collector %s", d, tt.name)
				}
			}
			if evs := g.events(t, gateway.MaxAdminEvents); len(evs) != conns*each {
				t.Errorf("journal holds %d events for %d answered changes", len(evs), conns*each)
			}
			if !tt.slow {
				// The operators see the failing export: a warning, at
				// most one a minute (docs/operations.md, "Trace collector
				// down"), and a counter to alert on.
				time.Sleep(6 * time.Second) // the batcher's 5 s export interval
				var warns, infos int
				for _, l := range strings.Split(g.proc.stderr.String(), "\n") {
					var m map[string]any
					if json.Unmarshal([]byte(l), &m) != nil {
						continue
					}
					msg, _ := m["msg"].(string)
					switch {
					case strings.HasPrefix(msg, "telemetry: span export failed") && m["level"] == "WARN":
						warns++
					case strings.Contains(msg, "traces export"):
						infos++
					}
				}
				if warns != 1 || infos != 0 {
					t.Errorf("collector down: %d WARN lines \"telemetry: span export failed\" and %d other export lines, want one warning and nothing else\n%s",
						warns, infos, opsTail(g.proc.stderr.String(), 1500))
				}
				resp, err := http.Get("http://" + g.http + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !regexp.MustCompile(`(?m)^pingate_telemetry_errors_total\{[^}]*\} [1-9]`).Match(raw) {
					t.Errorf("/metrics: no pingate_telemetry_errors_total above 0 with the collector down")
				}
			}
			if err := g.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			code := g.proc.wait(t, grace+10*time.Second)
			took := time.Since(start)
			if code != 0 {
				t.Errorf("serve exited %d after SIGTERM with the collector %s, want 0\n%s", code, tt.name, opsTail(g.proc.stderr.String(), 2000))
			}
			if took > 8*time.Second {
				t.Errorf("serve took %s to stop after SIGTERM with the collector %s and nothing in flight; want it to stop promptly, not wait out its %s grace", took.Round(100*time.Millisecond), tt.name, grace)
			}
		})
	}
}

// promFamily is one metric family as scripts/metrics_parse.py prints it.
type promFamily struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Samples []struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
		Value  float64           `json:"value"`
	} `json:"samples"`
}

// scrapeParsed reads /metrics at httpAddr and parses it with
// prometheus_client's parser (scripts/metrics_parse.py).
func scrapeParsed(t *testing.T, py, httpAddr string) map[string]promFamily {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "metrics.txt")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("../../scripts/metrics_parse.py")
	out := runPyScriptQuiet(t, "metrics parser", py, script, file)
	var fams []promFamily
	if err := json.Unmarshal(out, &fams); err != nil {
		t.Fatalf("metrics parser printed %q: %v", tail(string(out), 500), err)
	}
	m := map[string]promFamily{}
	for _, f := range fams {
		m[f.Name] = f
	}
	return m
}

// runPyScriptQuiet is runPyScript without logging the output.
func runPyScriptQuiet(t *testing.T, name, py string, args ...string) []byte {
	t.Helper()
	stdout, stderr, err := pyScript(t, py, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", name, err, stdout, stderr)
	}
	return stdout
}

// sum adds the values of fam's samples called sample whose labels include
// want.
func (f promFamily) sum(sample string, want map[string]string) float64 {
	var n float64
	for _, s := range f.Samples {
		if s.Name != sample {
			continue
		}
		ok := true
		for k, v := range want {
			if s.Labels[k] != v {
				ok = false
			}
		}
		if ok {
			n += s.Value
		}
	}
	return n
}

// TestPyMetricsParser: /metrics of the built `pingate serve`, read by
// prometheus_client's text-format parser, has the families
// docs/operations.md, docs/branch-api.md and deploy/prometheus name, with
// their types and labels, and they move as traffic goes through: requests
// by code, request and stage histograms, branch requests, and acquirer
// messages refused before the flow (docs/design.md: "logged and counted").
// No label carries a PAN, a PIN block, a terminal id or a card token.
func TestPyMetricsParser(t *testing.T) {
	py := needPython(t, "import prometheus_client.parser", "prometheus-client")
	g := startOTelGateway(t, "", 10*time.Second)
	before := scrapeParsed(t, py, g.http)
	if f, ok := before["target_info"]; !ok || f.sum("target_info", map[string]string{"service_instance_id": "otel-audit", "service_name": "pingate"}) != 1 {
		t.Errorf("target_info = %+v, want service_instance_id otel-audit, service_name pingate", f)
	}
	pop := embeddedPopulation()
	c, err := loadgen.Dial(context.Background(), g.acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const approved = 6
	var terminals []string
	for i := 0; i < approved; i++ {
		card := pop.Card(4500 + i)
		term := fmt.Sprintf("OTLPM%03d", i)
		terminals = append(terminals, term)
		if code := g.atm(t, c, atmChange(card.PAN, term, card.PIN, "4826")); code != "00" {
			t.Fatalf("change %d answered %s", i, code)
		}
	}
	wrong := atmChange(pop.Card(4510).PAN, "OTLPM100", "0007", "4826")
	terminals = append(terminals, wrong.Terminal)
	if code := g.atm(t, c, wrong); code != "55" {
		t.Fatalf("wrong PIN answered %s, want 55", code)
	}
	unblockPAN := pop.Card(4511).PAN
	g.secret(unblockPAN)
	if status, _ := g.branchPost(t, "teller", "/v1/pin/unblocks", "", map[string]any{"pan": unblockPAN,
		"branch": branchapi.DevBranch, "terminal": "OTLPM200", "teller": "T0117-07", "identity_check_ref": "IDCHK-2026-000501"}); status != http.StatusOK {
		t.Fatalf("branch unblock = %d", status)
	}
	terminals = append(terminals, "OTLPM200")
	// An acquirer the gateway does not know: 58 before the flow, no event.
	stranger, err := loadgen.Dial(context.Background(), g.acq)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	odd := atmChange(pop.Card(4512).PAN, "OTLPM300", pop.Card(4512).PIN, "4826")
	odd.Acquirer = "777001"
	terminals = append(terminals, odd.Terminal)
	if code := g.atm(t, stranger, odd); code != "58" {
		t.Fatalf("unknown acquirer answered %s, want 58", code)
	}

	after := scrapeParsed(t, py, g.http)
	family := func(name, typ string) promFamily {
		t.Helper()
		f, ok := after[name]
		if !ok {
			t.Errorf("/metrics has no family %s", name)
		} else if f.Type != typ {
			t.Errorf("%s is a %s, want a %s", name, f.Type, typ)
		}
		return f
	}
	moved := func(name, sample string, labels map[string]string, want float64) {
		t.Helper()
		if d := after[name].sum(sample, labels) - before[name].sum(sample, labels); d != want {
			t.Errorf("%s%v moved by %v, want %v", sample, labels, d, want)
		}
	}
	family("pingate_requests", "counter")
	moved("pingate_requests", "pingate_requests_total", map[string]string{"operation": "change", "channel": "atm", "outcome": "approved", "code": "00"}, approved)
	moved("pingate_requests", "pingate_requests_total", map[string]string{"operation": "change", "channel": "atm", "outcome": "declined", "code": "55"}, 1)
	moved("pingate_requests", "pingate_requests_total", map[string]string{"operation": "unblock", "channel": "branch", "code": "00"}, 1)
	family("pingate_request_duration_seconds", "histogram")
	moved("pingate_request_duration_seconds", "pingate_request_duration_seconds_count", map[string]string{"channel": "atm"}, approved+1)
	moved("pingate_request_duration_seconds", "pingate_request_duration_seconds_bucket", map[string]string{"channel": "atm", "le": "+Inf"}, approved+1)
	stages := family("pingate_stage_duration_seconds", "histogram")
	for _, s := range stages.Samples {
		switch s.Labels["stage"] {
		case "limiter", "hsm", "issuer", "journal":
		default:
			t.Errorf("pingate_stage_duration_seconds stage %q, not one docs/operations.md lists (limiter, hsm, issuer, journal)", s.Labels["stage"])
		}
	}
	for _, st := range []string{"limiter", "hsm", "issuer", "journal"} {
		if d := after["pingate_stage_duration_seconds"].sum("pingate_stage_duration_seconds_count", map[string]string{"stage": st}) -
			before["pingate_stage_duration_seconds"].sum("pingate_stage_duration_seconds_count", map[string]string{"stage": st}); d < approved {
			t.Errorf("stage %s timed %v times for %d approved changes", st, d, approved)
		}
	}
	if f := family("pingate_requests_inflight", "gauge"); f.sum("pingate_requests_inflight", nil) != 0 {
		t.Errorf("pingate_requests_inflight = %v with nothing in flight", f.sum("pingate_requests_inflight", nil))
	}
	if f := family("pingate_issuer_links_up", "gauge"); f.sum("pingate_issuer_links_up", map[string]string{"issuer": "ssbank"}) < 1 {
		t.Errorf("pingate_issuer_links_up{issuer=ssbank} < 1 with the link signed on")
	}
	family("pingate_limiter_decisions", "counter")
	family("pingate_outbox_journal_appends", "counter")
	family("pingate_outbox_journal_depth", "gauge")
	family("pingate_branch_requests", "counter")
	moved("pingate_branch_requests", "pingate_branch_requests_total", map[string]string{"route": "/v1/pin/unblocks", "method": "POST", "status": "200", "channel": "branch"}, 1)
	family("pingate_branch_request_duration_seconds", "histogram")
	// Refused before the flow: counted, since no event records it.
	family("pingate_acquirer_refusals", "counter")
	moved("pingate_acquirer_refusals", "pingate_acquirer_refusals_total", map[string]string{"code": "58"}, 1)
	moved("pingate_requests", "pingate_requests_total", map[string]string{"code": "58"}, 0)

	// No label carries card data, secrets or per-terminal values.
	panLike := regexp.MustCompile(`\d{12,19}`)
	hexLike := regexp.MustCompile(`(?i)[0-9a-f]{16,}`)
	series := 0
	for _, f := range after {
		for _, s := range f.Samples {
			series++
			for k, v := range s.Labels {
				switch k {
				case "terminal", "pan", "card", "card_token", "stan", "operation_id", "request_id":
					t.Errorf("%s has a label %s: unbounded or card data", s.Name, k)
				}
				if panLike.MatchString(v) || hexLike.MatchString(v) {
					t.Errorf("%s{%s=%q} looks like a card number or key material", s.Name, k, v)
				}
				for _, term := range terminals {
					if v == term {
						t.Errorf("%s{%s=%q}: a terminal id as a label value", s.Name, k, v)
					}
				}
				g.secretsMu.Lock()
				for _, sec := range g.secrets {
					if len(sec) > 4 && strings.Contains(strings.ToUpper(v), strings.ToUpper(sec)) {
						t.Errorf("%s{%s}: carries a PAN or PIN block the test sent", s.Name, k)
					}
				}
				g.secretsMu.Unlock()
			}
		}
	}
	t.Logf("%d families, %d series after the traffic", len(after), series)
}

// TestOTLPKafkaTraceparentPy: the outcome event on a real Kafka broker
// carries the request's trace (docs/events.md): its traceparent header has
// the body's trace_id and names the exported pingate.journal.append span,
// and the relay's pingate.kafka.publish producer span is that span's child
// in the exported trace, naming the topic and the event's ce_id.
func TestOTLPKafkaTraceparentPy(t *testing.T) {
	py := needPython(t, "import opentelemetry.proto.collector.trace.v1.trace_service_pb2", "opentelemetry-proto")
	k := testservers.StartKafka(t)
	const topic, partitions = "pingate.otlp.v1", 1
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	rcv := startOTLPReceiver(t, py)
	g := startOTelGatewayEvents(t, fmt.Sprintf("otlp_endpoint: %q", rcv.addr),
		fmt.Sprintf(", kafka_brokers: [%q], kafka_topic: %q", k.Brokers, topic), 10*time.Second)
	c, err := loadgen.Dial(context.Background(), g.acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	card := embeddedPopulation().Card(4600)
	if code := g.atm(t, c, atmChange(card.PAN, "OTLPK001", card.PIN, "4826")); code != "00" {
		t.Fatalf("ATM change answered %s", code)
	}
	msgs := readTopic(t, k.Brokers, topic, partitions, 1, 60*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("topic holds %d events, want 1", len(msgs))
	}
	var m kafka.Message
	for _, v := range msgs {
		m = v
	}
	headers := map[string]string{}
	for _, h := range m.Headers {
		headers[h.Key] = string(h.Value)
	}
	var body struct {
		TraceID string `json:"trace_id"`
	}
	if err := json.Unmarshal(m.Value, &body); err != nil {
		t.Fatal(err)
	}
	tp := strings.Split(headers["traceparent"], "-")
	if len(tp) != 4 || tp[0] != "00" || tp[1] != body.TraceID || tp[3] != "01" {
		t.Fatalf("event traceparent %q, body trace_id %q: want 00-<trace_id>-<span>-01", headers["traceparent"], body.TraceID)
	}
	all := rcv.waitSpans(t, "the event's trace with its Kafka publish", func(s []otlpSpan) bool {
		_, ok := byName(traceOf(s, body.TraceID), "pingate.kafka.publish")
		return ok
	})
	tr := traceOf(all, body.TraceID)
	var named *otlpSpan
	for i := range tr {
		if tr[i].SpanID == tp[2] {
			named = &tr[i]
		}
	}
	if named == nil || named.Name != "pingate.journal.append" {
		t.Errorf("event traceparent names span %s: %+v; want the exported pingate.journal.append (trace %v)", tp[2], named, spanNames(tr))
	}
	pub, _ := byName(tr, "pingate.kafka.publish")
	if pub.Kind != "SPAN_KIND_PRODUCER" || pub.ParentSpanID != tp[2] || pub.attr("messaging.system") != "kafka" ||
		pub.attr("messaging.destination.name") != topic || pub.attr("messaging.message.id") != headers["ce_id"] {
		t.Errorf("pingate.kafka.publish = %+v; want a PRODUCER child of the event's traceparent span naming topic %s and ce_id %s", pub, topic, headers["ce_id"])
	}
	checkTree(t, "ATM trace with the Kafka publish", tr, "")
	g.secretsMu.Lock()
	checkNoSecrets(t, all, g.secrets)
	g.secretsMu.Unlock()
}

// TestPyMetricsIssuerDownFromStart: a gateway that starts while its issuer
// does not answer shows pingate_issuer_links_up{issuer} 0 on /metrics, so
// that deploy/prometheus's PingateIssuerUnreachable (max by (issuer) < 1)
// fires; a series that appears only at the first sign-on would leave the
// alert silent for an issuer that was never reached.
func TestPyMetricsIssuerDownFromStart(t *testing.T) {
	py := needPython(t, "import prometheus_client.parser", "prometheus-client")
	dir := t.TempDir()
	p := opsStart(t, "serve", "--config", opsServeConfig(t, dir, freeAddr(t), 10*time.Second))
	_, httpAddr, _ := servingAddrs(t, p.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/healthz", http.StatusOK)
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusServiceUnavailable)
	fams := scrapeParsed(t, py, httpAddr)
	f, ok := fams["pingate_issuer_links_up"]
	if !ok {
		t.Fatalf("/metrics has no pingate_issuer_links_up while issuer ssbank is unreachable: PingateIssuerUnreachable cannot fire")
	}
	found := false
	for _, s := range f.Samples {
		if s.Labels["issuer"] == "ssbank" {
			found = true
			if s.Value != 0 {
				t.Errorf("pingate_issuer_links_up{issuer=ssbank} = %v with no link signed on, want 0", s.Value)
			}
		}
	}
	if !found {
		t.Errorf("pingate_issuer_links_up has no series for issuer ssbank: %+v", f.Samples)
	}
}

// TestOTLPIssuerDownPy: a PIN change while the issuer cannot be reached is
// answered 91, and in its exported trace the pingate.issuer.roundtrip client
// span is an error (a collector's error view finds the failing call), with
// the reason as its status message and no error text beyond it.
func TestOTLPIssuerDownPy(t *testing.T) {
	py := needPython(t, "import opentelemetry.proto.collector.trace.v1.trace_service_pb2", "opentelemetry-proto")
	rcv := startOTLPReceiver(t, py)
	dir := t.TempDir()
	cfg := otelServeConfig(t, dir, fmt.Sprintf("otlp_endpoint: %q", rcv.addr), "", freeAddr(t), 10*time.Second)
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(raw), `hosts: ["issuer-sim"]`, fmt.Sprintf(`hosts: [%q]`, freeAddr(t)), 1)
	text = regexp.MustCompile(`(?m)^issuer_sim: .*\n`).ReplaceAllString(text, "")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p := opsStart(t, "serve", "--config", cfg)
	acq, httpAddr, _ := servingAddrs(t, p.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/healthz", http.StatusOK)
	g := &otelGateway{proc: p, acq: acq, http: httpAddr}
	c, err := loadgen.Dial(context.Background(), acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	card := embeddedPopulation().Card(4700)
	if code := g.atm(t, c, atmChange(card.PAN, "OTLPDOWN", card.PIN, "4826")); code != "91" {
		t.Fatalf("change with the issuer down answered %s, want 91", code)
	}
	all := rcv.waitSpans(t, "the change's issuer round trip", func(s []otlpSpan) bool {
		_, ok := byName(s, "pingate.journal.append")
		return ok
	})
	rt, ok := byName(all, "pingate.issuer.roundtrip")
	if !ok {
		t.Fatalf("no pingate.issuer.roundtrip span (%v)", spanNames(all))
	}
	if rt.Status["code"] != "STATUS_CODE_ERROR" || rt.Status["message"] == "" {
		t.Errorf("pingate.issuer.roundtrip status = %v with the issuer unreachable, want an error naming the reason", rt.Status)
	}
	checkNoSecrets(t, all, g.secrets)
}
