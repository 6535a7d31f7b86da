package payshield

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"pingate/pinblock"
)

// Config says how to reach the HSMs. Zero fields take the defaults named.
type Config struct {
	// Hosts are the HSMs' host:port addresses (payShield default port 1500).
	Hosts []string
	// HeaderLen is the length of the message header the HSMs are configured
	// with (payShield host settings, default 4). Headers carry sequence
	// numbers so several commands can be in flight on one connection; 0
	// means one command at a time per connection. Default 4; set
	// NoHeader for 0.
	HeaderLen int
	// NoHeader selects a header length of 0.
	NoHeader bool
	// Connections per HSM. Default 2.
	Connections int
	// Timeout bounds each command when the caller's ctx has no earlier
	// deadline. Default 2s.
	Timeout time.Duration
	// HealthInterval is how often each HSM is sent NC; an HSM that fails
	// is tried after the healthy ones until NC succeeds again. Default 5s;
	// negative disables the checks.
	HealthInterval time.Duration
	// TLS, when not nil, wraps each connection (payShield 10K TLS host
	// port).
	TLS *tls.Config
	// Logger receives alerts (command, error code, host; never data).
	// Default slog.Default().
	Logger *slog.Logger
	// KeyBlockLMK says the HSMs run a key-block LMK: keys under it are
	// Thales key blocks (key scheme S), generated and imported with key type
	// FFF and the key-block fields (docs/hsm.md). Default: a variant LMK
	// (schemes U, T).
	KeyBlockLMK bool
	// LMKID, when set (2 digits), names the LMK in every command that uses
	// keys ('%' and the identifier), for HSMs holding several LMKs; empty
	// uses the HSM's default LMK.
	LMKID string
}

func (c Config) withDefaults() Config {
	if c.HeaderLen == 0 && !c.NoHeader {
		c.HeaderLen = 4
	}
	if c.NoHeader {
		c.HeaderLen = 0
	}
	if c.Connections == 0 {
		c.Connections = 2
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate names every offending value: one error each, joined
// (errors.Join).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("payshield: "+format, args...)) }
	if len(c.Hosts) == 0 {
		bad("no hosts")
	}
	for _, h := range c.Hosts {
		if i := strings.LastIndexByte(h, ':'); i <= 0 || i == len(h)-1 {
			bad("host %q is not host:port", h)
		}
	}
	if c.HeaderLen < 0 || c.HeaderLen > 32 {
		bad("header length %d is not 0-32", c.HeaderLen)
	}
	if c.Connections < 0 || c.Connections > 64 {
		bad("connections %d is not 1-64", c.Connections)
	}
	if c.Timeout < 0 {
		bad("timeout %s is negative", c.Timeout)
	}
	if id := c.LMKID; id != "" && (len(id) != 2 || id[0] < '0' || id[0] > '9' || id[1] < '0' || id[1] > '9') {
		bad("LMK identifier %q is not 2 digits", id)
	}
	return errors.Join(errs...)
}

// Client sends host commands to a pool of HSMs: Connections connections to
// each, several commands in flight per connection (matched by header).
// Commands that are safe to repeat (translations, check values,
// diagnostics) move to another HSM when one fails; key generation and
// import do not (the HSM may have acted), and their failure is reported.
// Create it with New and stop it with Close.
type Client struct {
	cfg   Config
	hosts []*host
	rr    atomic.Uint64
	m     *metrics

	stop chan struct{}
	wg   sync.WaitGroup
}

// host is one HSM and its connections.
type host struct {
	addr    string
	attr    attribute.KeyValue // hsm=addr, on every metric
	addOpts []metric.AddOption // the attribute set {hsm}, made once
	cmdOpts sync.Map           // command code → []metric.RecordOption {hsm, command} (commandOpts)
	m       *metrics
	cfg     *Config
	mu      sync.Mutex
	conns   []*conn // fixed length; nil or dead slots are dialled on use
	next    atomic.Uint64
	healthy atomic.Bool

	commands, failures atomic.Uint64
	latencyNanos       atomic.Uint64
	codesMu            sync.Mutex
	codes              map[string]uint64
}

// New returns a Client; it dials lazily, on first use of each connection.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg, stop: make(chan struct{})}
	for _, a := range cfg.Hosts {
		attr := attribute.String("hsm", a)
		h := &host{addr: a, attr: attr, addOpts: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attr))}, cfg: &c.cfg, conns: make([]*conn, cfg.Connections), codes: map[string]uint64{}}
		h.healthy.Store(true)
		c.hosts = append(c.hosts, h)
	}
	c.m = newMetrics(c)
	for _, h := range c.hosts {
		h.m = c.m
	}
	if cfg.HealthInterval > 0 {
		c.wg.Add(1)
		go c.healthLoop()
	}
	return c, nil
}

// Close stops the health checks and closes every connection; calls in
// flight get ErrModuleUnavailable.
func (c *Client) Close() error {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
	c.m.close()
	for _, h := range c.hosts {
		h.mu.Lock()
		for i, cn := range h.conns {
			if cn != nil {
				cn.close()
				h.conns[i] = nil
			}
		}
		h.mu.Unlock()
	}
	return nil
}

func (c *Client) healthLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		for _, h := range c.hosts {
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
			var (
				resp [1][]byte
				errs [1]error
			)
			err := h.exchange(ctx, "NC", [][]byte{nil}, resp[:], errs[:])
			if err == nil {
				err = errs[0]
			}
			cancel()
			was := h.healthy.Swap(err == nil)
			switch {
			case err != nil && was:
				c.cfg.Logger.Error("payshield: HSM removed from the pool", "hsm", h.addr, "err", err)
			case err == nil && !was:
				c.cfg.Logger.Info("payshield: HSM re-admitted to the pool", "hsm", h.addr)
			}
		}
	}
}

// Ready reports whether at least one HSM answered its last health check (or
// has not failed yet).
func (c *Client) Ready() error {
	for _, h := range c.hosts {
		if h.healthy.Load() {
			return nil
		}
	}
	return fmt.Errorf("%w: no reachable HSM", pinblock.ErrModuleUnavailable)
}

// order lists the hosts to try: healthy ones first, round-robin among them
// (with one host, just it).
func (c *Client) order(one bool) []*host {
	if one {
		return c.hosts
	}
	n := len(c.hosts)
	start := int(c.rr.Add(1) % uint64(n))
	out := make([]*host, 0, n)
	var sick []*host
	for i := range n {
		h := c.hosts[(start+i)%n]
		if h.healthy.Load() {
			out = append(out, h)
		} else {
			sick = append(sick, h)
		}
	}
	return append(out, sick...)
}

// do sends one command (code plus fields) and returns the response fields
// after the error code (doN with one command).
func (c *Client) do(ctx context.Context, code string, fields []byte, retry bool) ([]byte, error) {
	var resp [1][]byte
	err := c.doN(ctx, code, [][]byte{fields}, resp[:], retry)
	return resp[0], err
}

// doN sends the commands code+fields[i] (at most maxBatch) together, in
// one write on one connection, and sets resp[i] to each response's fields
// after the error code. The error is the first command's that failed, and
// resp holds what the others answered. With retry, a transport failure
// moves the commands to the next HSM; an HSM's error code never does
// (another HSM with the same LMK would answer the same).
func (c *Client) doN(ctx context.Context, code string, fields, resp [][]byte, retry bool) error {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > c.cfg.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	var (
		lastErr error
		errs    [maxBatch]error
	)
	if len(fields) > maxBatch {
		return fmt.Errorf("%w: %d commands in one batch", ErrProtocol, len(fields))
	}
	one := len(c.hosts) == 1
	for _, h := range c.order(one) {
		err := h.exchange(ctx, code, fields, resp, errs[:len(fields)])
		if err == nil {
			var first error
			for _, e := range errs[:len(fields)] {
				if e == nil {
					continue
				}
				var he *Error
				switch {
				case errors.As(e, &he):
					if he.Alert {
						c.cfg.Logger.Error("payshield: HSM error needs attention", "hsm", h.addr, "command", code, "code", he.Code, "meaning", codeText(he.Code))
					}
				case errors.Is(e, ErrProtocol):
					c.cfg.Logger.Error("payshield: unreadable HSM response", "hsm", h.addr, "command", code, "err", e)
				}
				if first == nil {
					first = e
				}
			}
			return first
		}
		if ctx.Err() != nil {
			// The caller's time ran out: name the HSM and the command,
			// and whether it may have acted (the error still wraps the
			// context's).
			what := "no answer in time"
			if errors.Is(ctx.Err(), context.Canceled) {
				what = "canceled before the answer"
			}
			if !retry {
				what += " (not retried: it may have acted)"
			}
			return fmt.Errorf("%s to hsm %s: %s: %w", code, h.addr, what, err)
		}
		lastErr = err
		if h.healthy.Swap(false) {
			c.cfg.Logger.Error("payshield: HSM removed from the pool", "hsm", h.addr, "err", err)
		}
		if !retry {
			return fmt.Errorf("%s not retried on another HSM (it may have acted): %w", code, err)
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: no HSM configured", pinblock.ErrModuleUnavailable)
	}
	return lastErr
}

// conn returns a live connection, dialling the slot it picks if needed.
func (h *host) conn(ctx context.Context) (*conn, error) {
	i := int(h.next.Add(1) % uint64(len(h.conns)))
	h.mu.Lock()
	cn := h.conns[i]
	if cn != nil && cn.alive() {
		h.mu.Unlock()
		return cn, nil
	}
	h.mu.Unlock()
	nc, err := dialConn(ctx, h.addr, h.cfg.HeaderLen, h.cfg.TLS)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.conns[i]; old != nil && old.alive() {
		nc.close()
		return old, nil
	}
	h.conns[i] = nc
	return nc, nil
}

// exchange sends the commands on one connection (roundTrip) and sets
// resp[i] to each response's fields, errs[i] to its error (the HSM's error
// code, or ErrProtocol for a response that is not the command's). The
// error returned is a transport failure, which every command shares.
func (h *host) exchange(ctx context.Context, code string, fields, resp [][]byte, errs []error) error {
	// Metrics are recorded without ctx: a caller's trace or cancellation
	// has no bearing on them.
	mctx := context.Background()
	n := int64(len(fields))
	start := time.Now()
	h.commands.Add(uint64(n))
	h.m.inFlight.Add(mctx, n, h.addOpts...)
	err := h.send(ctx, code, fields, resp, errs)
	took := time.Since(start)
	h.m.inFlight.Add(mctx, -n, h.addOpts...)
	h.latencyNanos.Add(uint64(took) * uint64(n))
	cmdOpts := h.commandOpts(code)
	for i := range fields {
		h.m.duration.Record(mctx, took.Seconds(), cmdOpts...)
		e := err
		if e == nil {
			e = errs[i]
		}
		if e == nil {
			continue
		}
		h.failures.Add(1)
		var he *Error
		key := "transport"
		if errors.As(e, &he) {
			key = he.Code
		}
		h.codesMu.Lock()
		h.codes[key]++
		h.codesMu.Unlock()
		h.m.errors.Add(mctx, 1, metric.WithAttributes(h.attr, attribute.String("command", code), attribute.String("code", key)))
	}
	return err
}

// commandOpts are the metric attribute set {hsm, command}, made once per
// command code (building a set per command cost more than the rest of the
// client's bookkeeping).
func (h *host) commandOpts(code string) []metric.RecordOption {
	if o, ok := h.cmdOpts.Load(code); ok {
		return o.([]metric.RecordOption)
	}
	o := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(h.attr, attribute.String("command", code)))}
	h.cmdOpts.Store(code, o)
	return o
}

func (h *host) send(ctx context.Context, code string, fields, resp [][]byte, errs []error) error {
	cn, err := h.conn(ctx)
	if err != nil {
		return err
	}
	if err := cn.roundTrip(ctx, code, fields, resp); err != nil {
		return err
	}
	for i, r := range resp {
		resp[i], errs[i] = checkResponse(code, r)
	}
	return nil
}

// checkResponse splits a response into its fields after the error code, or
// the error it reports.
func checkResponse(code string, resp []byte) ([]byte, error) {
	if len(resp) < 4 || resp[0] != code[0] || resp[1] != code[1]+1 {
		got := ""
		if len(resp) >= 2 {
			got = string(resp[:2])
		}
		return nil, fmt.Errorf("%w: %s answered %q, want %s", ErrProtocol, code, got, responseCode(code))
	}
	if resp[2] != '0' || resp[3] != '0' {
		return nil, errorFor(code, string(resp[2:4]))
	}
	return resp[4:], nil
}

// responseCode is the response code of a command: its second character
// incremented (CA → CB, A0 → A1, BU → BV).
func responseCode(code string) string {
	return string([]byte{code[0], code[1] + 1})
}

// HostStats are one HSM's counters since the Client was created.
type HostStats struct {
	Addr        string
	Healthy     bool
	InFlight    int
	Commands    uint64
	Failures    uint64
	MeanLatency time.Duration
	// Errors counts failed commands by HSM error code, or "transport".
	Errors map[string]uint64
}

// Stats returns each HSM's counters, in configuration order.
func (c *Client) Stats() []HostStats {
	out := make([]HostStats, 0, len(c.hosts))
	for _, h := range c.hosts {
		s := HostStats{Addr: h.addr, Healthy: h.healthy.Load(), Commands: h.commands.Load(), Failures: h.failures.Load(), Errors: map[string]uint64{}}
		if s.Commands > 0 {
			s.MeanLatency = time.Duration(h.latencyNanos.Load() / s.Commands)
		}
		h.mu.Lock()
		for _, cn := range h.conns {
			if cn != nil {
				s.InFlight += cn.inFlight()
			}
		}
		h.mu.Unlock()
		h.codesMu.Lock()
		for k, v := range h.codes {
			s.Errors[k] = v
		}
		h.codesMu.Unlock()
		out = append(out, s)
	}
	return out
}
