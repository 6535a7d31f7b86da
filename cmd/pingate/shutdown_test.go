package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/outbox"
	"pingate/iso8583"
)

// Graceful shutdown of the built binary under load: `pingate serve` in
// front of a standalone `pingate-dev issuer-sim` with latency, requests in
// flight over TCP, SIGTERM mid-flight.

// opsBin is the pingate binary built once per test run with the Makefile's
// build line (the one the Dockerfile runs), output redirected to a temporary
// directory.
var opsBin struct {
	once sync.Once
	path string
	err  error
}

func opsBinary(t *testing.T) string {
	t.Helper()
	opsBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "pingate-ops-")
		if err != nil {
			opsBin.err = err
			return
		}
		opsBin.path = filepath.Join(dir, "pingate")
		line := makeBuildLine(t)
		if !strings.Contains(line, "-o bin/pingate ") {
			opsBin.err = fmt.Errorf("Makefile build line %q: no -o bin/pingate", line)
			return
		}
		line = strings.Replace(line, "-o bin/pingate ", "-o '"+opsBin.path+"' ", 1)
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = opsRepo
		if out, err := cmd.CombinedOutput(); err != nil {
			opsBin.err = fmt.Errorf("%s: %v\n%s", line, err, out)
		}
	})
	if opsBin.err != nil {
		t.Fatal(opsBin.err)
	}
	return opsBin.path
}

// opsTail returns the last n bytes of s.
func opsTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// opsProc is a running pingate child process.
type opsProc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line
	stderr *syncBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// opsStart starts the binary with args; t.Cleanup kills it if the test did
// not stop it.
func opsStart(t *testing.T, args ...string) *opsProc {
	t.Helper()
	bin := opsBinary(t)
	if devCommands[args[0]] {
		bin = devBinary(t)
	}
	p := &opsProc{cmd: exec.Command(bin, args...), lines: make(chan string, 16), stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// firstLine waits for the process's first line of stdout.
func (p *opsProc) firstLine(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			<-p.exited
			t.Fatalf("%s exited before printing: %v\n%s", p.cmd.Args[1], p.err, opsTail(p.stderr.String(), 2000))
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed nothing in 30s\n%s", p.cmd.Args[1], opsTail(p.stderr.String(), 2000))
	}
	return ""
}

// wait waits for the process to exit and returns its exit code.
func (p *opsProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s\n%s", p.cmd.Args[1], within, opsTail(p.stderr.String(), 3000))
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

// opsServeConfig writes a serve config for an issuer at issuerAddr, all
// listeners on free loopback ports, state under dir.
func opsServeConfig(t *testing.T, dir, issuerAddr string, grace time.Duration) string {
	t.Helper()
	text := fmt.Sprintf(`instance: ops-shutdown
acquirer_listener: {addr: "127.0.0.1:0", shutdown_grace: %s}
http: {addr: "127.0.0.1:0"}
admin: {addr: "127.0.0.1:0"}
security: {dev_keys: true}
routing:
  institution: "999001"
  acquirers:
    - {id: "100001", channel: atm, terminals: ["*"], keys: {1: dev-atm-zpk}, zmk: dev-atm-zmk, formats: [0, 3]}
  issuers:
    - {id: ssbank, institution: "300001", hosts: [%q], pin_format: 4, key: dev-issuer-zpk, key_index: 1}
  routes:
    - {prefix: "62284812", issuer: ssbank}
    - {prefix: "62284813", issuer: ssbank}
    - {prefix: "621700", issuer: ssbank}
limits: {backend: memory}
events: {journal_dir: %q}
reversals: {dir: %q}
log: {format: json, level: info}
branch: {enabled: false}
`, grace, issuerAddr, filepath.Join(dir, "journal"), filepath.Join(dir, "reversals"))
	p := filepath.Join(dir, "pingate.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// servingAddrs parses serve's "pingate serving: acquirer A, http H, admin M".
func servingAddrs(t *testing.T, line string) (acq, httpAddr, admin string) {
	t.Helper()
	if _, err := fmt.Sscanf(strings.ReplaceAll(line, ",", ""), "pingate serving: acquirer %s http %s admin %s", &acq, &httpAddr, &admin); err != nil {
		t.Fatalf("serve printed %q: %v", line, err)
	}
	return acq, httpAddr, admin
}

// waitHTTP polls url until it answers want.
func waitHTTP(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within 20s (last: %v %v)", url, want, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricValue sums the samples of one metric name on /metrics.
func metricValue(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
}

// journalByTerminal reads the journal of a stopped gateway: events by terminal.
func journalByTerminal(t *testing.T, dir string) map[string][]string {
	t.Helper()
	j, err := outbox.Open(outbox.Config{Dir: dir, Source: "/pingate/ops-shutdown"})
	if err != nil {
		t.Fatalf("open journal after exit: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = j.Shutdown(ctx)
	}()
	entries, err := j.Entries(1, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		ev, err := events.Decode(e.Message)
		if err != nil {
			t.Fatal(err)
		}
		out[ev.Terminal] = append(out[ev.Terminal], ev.Code)
	}
	return out
}

// opsResult is one request of the load: its terminal (unique) and answer.
type opsResult struct {
	terminal, code string
	err            error
}

// TestShutdownUnderLoadLosesNothing: 48 PIN changes are in flight at the
// issuer (it answers after 600ms) when the gateway gets SIGTERM, and more
// arrive during the drain. Every in-flight request is answered 00; every
// answered request has exactly one event with its code in the journal; no
// request has an event without an answer; the process exits 0.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	dir := t.TempDir()
	sim := opsStart(t, "issuer-sim", "--addr", "127.0.0.1:0", "--latency", "600ms")
	simAddr := sim.firstLine(t)
	cfgPath := opsServeConfig(t, dir, simAddr, 20*time.Second)
	gw := opsStart(t, "serve", "--config", cfgPath)
	acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)

	ctx := context.Background()
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 10000}
	const conns, inflight = 4, 48
	clients := make([]*loadgen.Client, conns)
	for i := range clients {
		c, err := loadgen.Dial(ctx, acq)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	var (
		mu      sync.Mutex
		results []opsResult
		wg      sync.WaitGroup
	)
	send := func(i int) {
		defer wg.Done()
		op := opsChange(pop, 1000+i, "4826")
		code, err := opsDo(ctx, clients[i%conns], op)
		mu.Lock()
		results = append(results, opsResult{terminal: op.Terminal, code: code, err: err})
		mu.Unlock()
	}
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go send(i)
	}
	// All of them are inside the gateway, waiting for the issuer.
	deadline := time.Now().Add(15 * time.Second)
	for metricValue(t, httpAddr, "pingate_requests_inflight") < inflight {
		if time.Now().After(deadline) {
			t.Fatalf("only %v requests in flight", metricValue(t, httpAddr, "pingate_requests_inflight"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// More load as the drain begins and once it runs, on the open
	// connections and new ones: these may be answered or not, but never
	// half (an event without its answer).
	for i := inflight; i < inflight+48; i++ {
		if i == inflight+24 {
			for !strings.Contains(gw.stderr.String(), `"msg":"draining"`) {
				time.Sleep(time.Millisecond)
			}
			// Draining: the load balancer must see the instance not ready.
			if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("readyz while draining = %d, want 503", resp.StatusCode)
				}
			}
		}
		wg.Add(1)
		go send(i)
		if i%8 == 0 {
			if c, err := loadgen.Dial(ctx, acq); err == nil {
				c.Close()
			}
		}
	}
	if code := gw.wait(t, 40*time.Second); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM\n%s", code, opsTail(gw.stderr.String(), 3000))
	}
	wg.Wait()
	if !strings.Contains(gw.stderr.String(), `"msg":"stopped"`) {
		t.Errorf("serve log has no clean stop:\n%s", opsTail(gw.stderr.String(), 2000))
	}

	byTerminal := journalByTerminal(t, filepath.Join(dir, "journal"))
	answered := 0
	for _, r := range results {
		evs := byTerminal[r.terminal]
		idx := 0
		fmt.Sscanf(strings.TrimPrefix(r.terminal, "OPS"), "%d", &idx)
		inFlight := idx-1000 < inflight
		switch {
		case r.err == nil:
			answered++
			if inFlight && r.code != "00" {
				t.Errorf("in-flight request %s answered %s, want 00", r.terminal, r.code)
			}
			if len(evs) != 1 || evs[0] != r.code {
				t.Errorf("request %s answered %s has events %v, want exactly one with its code", r.terminal, r.code, evs)
			}
		case inFlight:
			t.Errorf("in-flight request %s got no answer: %v", r.terminal, r.err)
		case len(evs) != 0:
			t.Errorf("request %s got no answer but has events %v: an outcome without its answer", r.terminal, evs)
		}
	}
	if answered < inflight {
		t.Errorf("%d answers, want at least the %d in flight", answered, inflight)
	}
	t.Logf("%d requests, %d answered, %d events", len(results), answered, len(byTerminal))

	_ = sim.cmd.Process.Signal(syscall.SIGTERM)
	if code := sim.wait(t, 20*time.Second); code != 0 {
		t.Errorf("issuer-sim exited %d after SIGTERM", code)
	}
}

// TestShutdownSecondSignalForcesExit: with a request held at the issuer
// for much longer than the test waits, a first SIGTERM starts the drain
// and a second one ends the process at once with status 1.
func TestShutdownSecondSignalForcesExit(t *testing.T) {
	dir := t.TempDir()
	sim := opsStart(t, "issuer-sim", "--addr", "127.0.0.1:0", "--latency", "60s")
	simAddr := sim.firstLine(t)
	gw := opsStart(t, "serve", "--config", opsServeConfig(t, dir, simAddr, 60*time.Second))
	acq, httpAddr, _ := servingAddrs(t, gw.firstLine(t))
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK)

	ctx := context.Background()
	c, err := loadgen.Dial(ctx, acq)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pop := issuersim.Population{Seed: 1, BINs: gateway.DevBINs(), PerBIN: 10000}
	answered := make(chan error, 1)
	go func() {
		_, err := opsDo(ctx, c, opsChange(pop, 2000, "4826"))
		answered <- err
	}()
	for metricValue(t, httpAddr, "pingate_requests_inflight") < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(gw.stderr.String(), `"msg":"draining"`) {
		select {
		case <-gw.exited:
			t.Fatalf("serve exited on the first signal with a request in flight\n%s", gw.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := gw.wait(t, 20*time.Second); code != 1 {
		t.Errorf("serve exited %d after the second signal, want 1", code)
	}
	if !strings.Contains(gw.stderr.String(), "second signal") {
		t.Errorf("serve log does not say why it exited:\n%s", opsTail(gw.stderr.String(), 2000))
	}
	if err := <-answered; err == nil {
		t.Error("the request held at the issuer was answered: the process did not exit early")
	}
	// The simulator still holds the request: t.Cleanup kills it.
}

// TestShutdownSignsOffIssuerLinks: Shutdown sends a sign-off (0800, NMI 002)
// on every signed-on issuer link before closing it.
func TestShutdownSignsOffIssuerLinks(t *testing.T) {
	var (
		mu   sync.Mutex
		nmis []string
	)
	issuer, err := iso8583.NewServer(iso8583.Config{}, iso8583.HandlerFunc(func(_ context.Context, c *iso8583.ServerConn, frame []byte) {
		f, err := iso8583.Unpack(iso8583.IssuerSpec, frame)
		if err != nil || f.MTI != iso8583.MTINetworkRequest {
			return
		}
		mu.Lock()
		nmis = append(nmis, f.NetworkCode)
		mu.Unlock()
		b, err := iso8583.Pack(iso8583.IssuerSpec, &iso8583.Fields{MTI: "0810", STAN: f.STAN, TransmissionTime: f.TransmissionTime,
			AcquirerID: f.AcquirerID, ReceivingInstitution: f.ReceivingInstitution, NetworkCode: f.NetworkCode, ResponseCode: iso8583.RCApproved})
		if err == nil {
			_ = c.WriteFrame(b)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = issuer.Serve(context.Background(), ln) }()
	t.Cleanup(func() { _ = issuer.Close() })

	g := opsGateway(t, func(c *gateway.Config) {
		c.IssuerSim = nil
		c.Routing.Issuers = append(c.Routing.Issuers[:0:0], c.Routing.Issuers...)
		c.Routing.Issuers[0].Hosts = []string{ln.Addr().String()}
		c.Routing.Issuers[0].Connections = 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	count := map[string]int{}
	for _, n := range nmis {
		count[n]++
	}
	if count[iso8583.NMISignOn] != 2 || count[iso8583.NMISignOff] != 2 {
		t.Errorf("issuer saw network messages %v, want 2 sign-ons and 2 sign-offs", nmis)
	}
	if len(nmis) > 0 && nmis[len(nmis)-1] != iso8583.NMISignOff {
		t.Errorf("last network message %s, want the sign-off", nmis[len(nmis)-1])
	}
}

// TestBySignal: a context that main's signal.NotifyContext canceled is told
// apart from one canceled or timed out otherwise, so that serve skips the
// second delivery of the signal that started the shutdown instead of
// reading it as a second signal (the signal's cause error reports itself as
// context.Canceled under errors.Is).
func TestBySignal(t *testing.T) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGUSR1)
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGUSR1 did not cancel the signal context")
	}
	if !errors.Is(context.Cause(ctx), context.Canceled) {
		t.Log("the signal's cause no longer claims to be context.Canceled")
	}
	if !bySignal(ctx) {
		t.Errorf("bySignal = false for a context canceled by %v", context.Cause(ctx))
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	timedOut, cancel2 := context.WithTimeout(context.Background(), 0)
	defer cancel2()
	<-timedOut.Done()
	for name, c := range map[string]context.Context{"canceled": canceled, "timed out": timedOut} {
		if bySignal(c) {
			t.Errorf("bySignal = true for a context %s without a signal", name)
		}
	}
}
