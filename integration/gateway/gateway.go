package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"pingate/integration/issuersim"
	"pingate/integration/kafkatopic"
	"pingate/integration/outbox"
	"pingate/integration/payshield"
	"pingate/integration/redislimit"
	"pingate/integration/reversalstore"
	"pingate/integration/telemetry"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// Gateway is one pingate: every component, wired, with the order in which
// they start and stop. New builds it and binds its listeners, Run serves,
// Shutdown drains and stops.
type Gateway struct {
	cfg       Config            // without routing.routes: routes holds them
	routes    *routing.BINTable // the BIN table the gateway started with
	log       *slog.Logger
	tel       *telemetry.Telemetry
	ring      *pinblock.Keyring
	hsm       *pinblock.SoftwareModule
	sm        pinblock.SecurityModule // the flow's module: hsm, or the payShield one
	ps        *payshield.Client       // security.module payshield
	psKeys    *payshield.Keys
	sim       *issuersim.Sim
	simAddr   string
	reversals *reversalstore.Store
	links     *routing.IssuerLinks
	journal   *outbox.Journal
	limiter   limiter
	shared    *shared        // limits.backend redis: approvals and key changes shared with the other instances
	branch    *branchRuntime // nil when the branch API is off
	flow      *routing.Flow
	acq       *iso8583.Server
	acqAddr   string
	httpSrv   *http.Server
	httpAddr  string
	ops       *reloader // hot reload and the admin listener (reload.go, admin.go)
	wg        sync.WaitGroup
	errc      chan error // the first listener failure
	stopOnce  sync.Once
	stopErr   error

	// runMu guards the start of serving against Shutdown: starts are what
	// Run starts, in order; listeners are closed by a Shutdown that comes
	// before Run.
	runMu     sync.Mutex
	running   bool
	stopped   bool
	starts    []func(ctx context.Context)
	listeners []net.Listener
	done      chan struct{} // closed when Shutdown begins
}

// ErrClosed is returned by Run on a gateway that was shut down.
var ErrClosed = errors.New("gateway closed")

// devTokenKey is the card-token HMAC key of the embedded default: public, so
// its tokens protect nothing; refused under production like the dev keys.
const devTokenKey = "70696e676174652d6465762d63617264746f6b656e2d6b65792d303030303030"

// New builds everything cfg describes and binds every listener (acquirer,
// HTTP, admin, branch API, in-process issuer simulator), so that their
// addresses are known when it returns (a ":0" port is chosen here); nothing
// is served until Run. cfg is validated first (Config.Validate, after
// WithDefaults). log receives the gateway's log lines; nil discards them.
// ctx bounds the start-up work only (telemetry set-up, creating the Kafka
// topic). On error New returns a nil Gateway: what was built is closed
// again and nothing listens.
func New(ctx context.Context, cfg Config, log *slog.Logger) (g *Gateway, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g = &Gateway{cfg: cfg, log: log, errc: make(chan error, 1), done: make(chan struct{})}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = g.Shutdown(sctx)
			g = nil
		}
	}()

	g.tel, err = telemetry.Setup(ctx, telemetry.Config{
		ServiceInstance: cfg.Instance, OTLPEndpoint: cfg.Telemetry.OTLPEndpoint, OTLPInsecure: true,
		SampleRatio: cfg.Telemetry.SampleRatio, Logger: g.log,
	})
	if err != nil {
		return g, err
	}

	g.ring = pinblock.NewKeyring(cfg.Security.RotationGrace)
	if cfg.Security.DevKeys {
		if err := devkeys.Load(g.ring); err != nil {
			return g, err
		}
		log.Warn("running on the published development keys: for development and test only")
	}
	if err := loadKeyStore(cfg.Security, g.ring); err != nil {
		return g, err
	}
	if cfg.Security.Module != "payshield" {
		// Once, here and on reload: the translation path never checks modes.
		if err := checkKeyModes(cfg.Routing, ringModes(g.ring, time.Now())); err != nil {
			return g, err
		}
	}
	policy := pinblock.DefaultPINPolicy()
	if cfg.Security.WeakPINs != nil && !*cfg.Security.WeakPINs {
		policy = pinblock.PINPolicy{}
	}
	g.hsm = pinblock.NewSoftwareModule(g.ring, policy, nil)
	g.sm = g.hsm
	if cfg.Security.Module == "payshield" {
		if err := g.startPayShield(); err != nil {
			return g, err
		}
	}
	// As on reload: a route naming a key the module does not hold would
	// refuse every request on it.
	if err := checkKeyLabels(cfg.Routing, g.heldKeys(g.ring)); err != nil {
		return g, err
	}

	tokenKey, err := secretHex(cfg.Security.CardTokenKeyFile, cfg.Security.CardTokenKeyEnv, devTokenKey)
	if err != nil {
		return g, fmt.Errorf("card token key: %w", err)
	}
	if len(tokenKey) < 32 {
		return g, errors.New("card token key: want at least 32 bytes")
	}
	tokenizer := routing.NewTokenizer(tokenKey)
	// A payShield keeps its keys inside: without reversals.data_key the
	// reversal store's data key derives from the card-token key instead.
	var tokenSealer, tokenApprovals *pinblock.DataSealer
	if g.ps != nil && cfg.Reversals.DataKey == "" {
		tokenSealer, err = pinblock.DataSealerFromSecret(tokenKey, "reversals")
		if err == nil {
			tokenApprovals, err = pinblock.DataSealerFromSecret(tokenKey, "approvals")
		}
	}
	clear(tokenKey)
	if err != nil {
		return g, fmt.Errorf("reversal store data key: %w", err)
	}

	if cfg.IssuerSim != nil {
		if err := g.startSim(ctx); err != nil {
			return g, err
		}
	}

	dataKey := cfg.Reversals.DataKey
	if dataKey == "" && cfg.Security.DevKeys {
		dataKey = devkeys.ATMZMK
	}
	// The approvals kept in the shared duplicate window (they carry PANs
	// too) are sealed under a data key of their own from the same base key,
	// which every instance holds: any instance opens what another sealed.
	var sealer, approvalSealer *pinblock.DataSealer
	switch {
	case dataKey != "":
		sealer, err = g.hsm.DataSealer(pinblock.KeyRef{ID: dataKey}, "reversals")
		if err == nil {
			approvalSealer, err = g.hsm.DataSealer(pinblock.KeyRef{ID: dataKey}, "approvals")
		}
		if err != nil {
			return g, fmt.Errorf("reversals.data_key: %w", err)
		}
	case tokenSealer != nil:
		sealer, approvalSealer = tokenSealer, tokenApprovals
		log.Warn("reversal store sealed under a data key derived from the card-token key: set reversals.data_key to a key-store key to use the security module's")
	default:
		return g, errors.New("reversals.data_key: name a key held by the security module; the reversal store seals PANs under a data key derived from it")
	}
	if err := os.MkdirAll(cfg.Events.JournalDir, 0o700); err != nil {
		return g, err
	}
	if ev := cfg.Events; len(ev.KafkaBrokers) > 0 && ev.KafkaTopicPartitions > 0 {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kafkatopic.Ensure(tctx, ev.KafkaBrokers, kafkatopic.Spec{Topic: ev.KafkaTopic, Partitions: ev.KafkaTopicPartitions,
			Replication: max(ev.KafkaTopicReplication, 1), MinInSync: ev.KafkaTopicMinInSync})
		cancel()
		if err != nil {
			// The journal keeps every event; the relay retries until the
			// topic exists and Kafka takes them.
			log.Error("outcome topic not ready; events wait in the journal", "topic", ev.KafkaTopic, "err", err)
		}
	}
	g.journal, err = outbox.Open(outbox.Config{
		Dir: cfg.Events.JournalDir, Source: "/pingate/" + cfg.Instance, MaxDepth: cfg.Events.MaxDepth,
		MinFree: cfg.Events.MinFree, WriteTimeout: cfg.Events.JournalWriteTimeout, FS: cfg.Events.JournalFS,
		SyncInterval: cfg.Events.JournalSyncInterval,
		Relay: outbox.RelayConfig{Brokers: cfg.Events.KafkaBrokers, Topic: cfg.Events.KafkaTopic, WriteTimeout: cfg.Events.WriteTimeout,
			Linger: cfg.Events.RelayLinger},
	})
	if err != nil {
		return g, err
	}

	// The advices owed ahead live in the journal's database, so an
	// approval's entry and the delete of its advice are one synced write
	// (loggedSink.PublishDischarging). Advices an older gateway left in a
	// reversals.dir of their own are moved over first, before the links
	// start.
	if g.reversals, err = reversalstore.New(g.journal.Store(), sealer); err != nil {
		return g, err
	}
	if dir := cfg.Reversals.Dir; dir != "" && filepath.Clean(dir) != filepath.Clean(cfg.Events.JournalDir) {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := g.reversals.MoveFrom(mctx, dir, reversalstore.Options{})
		cancel()
		if err != nil {
			return g, fmt.Errorf("reversals.dir: %w", err)
		}
		if n > 0 {
			log.Warn("held reversal advices moved from reversals.dir into the journal's database; the directory is now empty",
				"moved", n, "from", dir, "to", cfg.Events.JournalDir)
		}
	}
	dialects, err := cfg.LoadDialects()
	if err != nil {
		return g, err
	}
	issuers := cfg.Routing.WithDefaults().Issuers
	codecs, err := routing.NewIssuerCodecs(issuers, dialects)
	if err != nil {
		return g, err
	}
	g.links = routing.NewIssuerLinks(routing.LinksConfig{
		Institution: cfg.Routing.Institution, Issuers: issuers, Codec: routing.IssuerDialect{}, Codecs: codecs,
		Dial: tcpDialer, Reversals: g.reversals, StoreTimeout: cfg.Reversals.WriteTimeout, Logger: log,
	})

	if err := g.startLimiter(); err != nil {
		return g, err
	}
	if g.shared, err = g.startShared(g.currentKey); err != nil {
		return g, err
	}
	g.ops = newReloader(g)
	deps := routing.Deps{
		HSM: g.sm, Sink: loggedSink{Journal: g.journal, revs: g.reversals, log: log}, Issuers: g.links, Tokenizer: tokenizer, Source: cfg.Instance,
		Limiter: g.ops.limits,
	}
	switch {
	case cfg.Security.KeyStore != "":
		deps.Keys = &keyChanges{sec: cfg.Security, hsm: g.sm, log: log}
	case g.ps != nil:
		deps.Keys = &hsmKeyChanges{m: g.sm, custodyLog: cfg.Security.CustodyLog, log: log}
	}
	if g.shared != nil {
		// An approval is sealed into the shared duplicate window's record,
		// for a 0420 that reaches another instance.
		deps.ApprovalSealer = approvalSealer
		inner := deps.Keys
		if inner == nil {
			inner = g.sm
		}
		deps.Keys = &sharedKeyChanges{inner: inner, sync: g.shared.keys}
		// Before serving, take the key changes other instances took while
		// this one was down; then keep up every key_sync_interval.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		g.shared.keys.sync(sctx)
		cancel()
		g.starts = append(g.starts, func(context.Context) { g.shared.keys.run() })
	}
	g.flow, err = routing.NewFlow(cfg.Routing, deps)
	if err != nil {
		return g, err
	}
	// From here the flow's BIN table holds the routes. The parsed list is
	// not kept beside it: for a million card ranges it is ~55 MB of
	// pointers that every GC cycle would mark again (optimisation log,
	// change 28). Config reads them back from the table.
	g.routes = g.flow.BINTable()
	g.cfg.Routing.Routes, g.ops.current.Routing.Routes = nil, nil
	// Reversals owed ahead that the issuer acknowledges are recorded as
	// events; the links start only in Run, after the simulator serves, so
	// the advices a killed process left are sent with their record.
	g.links.SetRecorder(g.flow.RecordReversal)
	g.starts = append(g.starts, func(context.Context) { g.links.Start() })

	if err := g.startBranchAPI(ctx); err != nil {
		return g, fmt.Errorf("branch api: %w", err)
	}

	fr, _ := iso8583.ParseFraming(cfg.Acquirer.Framing)
	g.acq, err = iso8583.NewServer(iso8583.Config{
		Framing: fr, MaxFrame: cfg.Acquirer.MaxFrame, ReadTimeout: cfg.Acquirer.ReadTimeout,
		IdleTimeout: cfg.Acquirer.IdleTimeout, MaxConns: cfg.Acquirer.MaxConns, MaxInFlightPerConn: cfg.Acquirer.MaxInFlight,
		GatherWrites: true, // answers finished together (one journal fsync) in one write: docs/optimisation-log.md, change 23
	}, newTracedFrames(routing.NewAcquirerFront(g.flow, log)))
	if err != nil {
		return g, err
	}
	ln, err := net.Listen("tcp", cfg.Acquirer.Addr)
	if err != nil {
		return g, fmt.Errorf("acquirer listener: %w", err)
	}
	g.acqAddr = ln.Addr().String()
	g.serve("acquirer listener", ln, func(ctx context.Context) error { return g.acq.Serve(ctx, ln) })

	hln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return g, fmt.Errorf("http listener: %w", err)
	}
	g.httpAddr = hln.Addr().String()
	g.httpSrv = opsServer(g.ops.notReadyWhileDraining(g.httpHandler()))
	g.serve("http listener", hln, func(context.Context) error { return g.httpSrv.Serve(hln) })
	if err := g.startAdmin(cfg.Admin); err != nil {
		return g, err
	}
	return g, nil
}

// Run serves every listener New bound and returns when ctx is done (nil), a
// listener fails (its error), or Shutdown begins (nil). It does not drain:
// call Shutdown, whatever Run returned. Run serves once; a second call, or a
// call after Shutdown, returns an error at once.
func (g *Gateway) Run(ctx context.Context) error {
	g.runMu.Lock()
	switch {
	case g.stopped:
		g.runMu.Unlock()
		return ErrClosed
	case g.running:
		g.runMu.Unlock()
		return errors.New("gateway: Run called twice")
	}
	g.running = true
	// The listeners serve until Shutdown, not until ctx ends: ending ctx
	// only returns Run, so that Shutdown can drain what is in flight.
	sctx := context.WithoutCancel(ctx)
	for _, start := range g.starts {
		start(sctx)
	}
	g.starts = nil
	g.runMu.Unlock()
	g.log.Info("pingate started", "acquirer", g.acqAddr, "http", g.httpAddr, "admin", g.AdminAddr(), "instance", g.cfg.Instance)
	select {
	case <-ctx.Done():
		return nil
	case err := <-g.errc:
		return err
	case <-g.done:
		return nil
	}
}

// serve registers a listener's serving loop for Run. A loop that ends with an
// error other than its server's closing reports it to Run (the first only).
func (g *Gateway) serve(name string, ln net.Listener, run func(ctx context.Context) error) {
	g.listeners = append(g.listeners, ln)
	g.starts = append(g.starts, func(ctx context.Context) {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, iso8583.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
				select {
				case g.errc <- fmt.Errorf("%s: %w", name, err):
				default:
				}
			}
		}()
	})
}

func (g *Gateway) startSim(ctx context.Context) error {
	sc := g.cfg.IssuerSim
	zpk, pvk, err := issuersim.DevelopmentKeys()
	if err != nil {
		return err
	}
	if sc.ZPK != "" {
		zpk.Zeroize()
		if zpk, err = devkeys.Key(sc.ZPK); err != nil {
			return fmt.Errorf("issuer_sim.zpk: %w", err)
		}
	}
	more, err := issuersim.DevelopmentKeyIndexZPKs()
	if err != nil {
		return err
	}
	g.sim, err = issuersim.New(issuersim.Config{
		Population: issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN},
		ZPK:        zpk, KeyIndexZPKs: more, PVK: pvk, Latency: sc.Latency, FailRate: sc.FailRate, Logger: g.log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", sc.Addr)
	if err != nil {
		return fmt.Errorf("issuer simulator listener: %w", err)
	}
	g.simAddr = ln.Addr().String()
	g.serve("issuer simulator", ln, func(ctx context.Context) error { return g.sim.Server().Serve(ctx, ln) })
	// The in-process simulator is the default route's issuer host.
	for i := range g.cfg.Routing.Issuers {
		for j, h := range g.cfg.Routing.Issuers[i].Hosts {
			if h == "issuer-sim" {
				g.cfg.Routing.Issuers[i].Hosts[j] = g.simAddr
			}
		}
	}
	return nil
}

// limiter is the gateway's limiter: a redislimit.Limiter on Redis, or for
// the "memory" backend a redislimit.Memory in this process (no connection,
// no listener; per instance and lost on restart).
type limiter interface {
	routing.Limiter
	Close() error
}

// startLimiter builds the limiter of the configured backend.
func (g *Gateway) startLimiter() error {
	var (
		l   limiter
		err error
	)
	if g.cfg.Limits.Backend == "memory" {
		l, err = redislimit.NewMemory(g.cfg.Limits.Config)
	} else {
		l, err = redislimit.New(g.cfg.Limits.Config)
	}
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	g.limiter = l
	return nil
}

// tcpDialer opens issuer links with the iso8583 client connection.
func tcpDialer(ctx context.Context, addr, framing string, onFrame func([]byte)) (routing.FrameConn, error) {
	fr, err := iso8583.ParseFraming(framing)
	if err != nil {
		return nil, err
	}
	return iso8583.Dial(ctx, addr, iso8583.ClientConfig{Framing: fr, OnFrame: onFrame, GatherWrites: true})
}

// TraceFlushTimeout bounds the flush of the spans still queued for the OTLP
// collector when the gateway shuts down.
const TraceFlushTimeout = 2 * time.Second

// Shutdown stops accepting, lets in-flight requests finish within ctx,
// flushes the journal, signs off issuer links, and closes everything; it
// returns when every goroutine the gateway started has ended. When ctx ends
// first, what is still in flight is cut off and the error says which part
// did not drain. Calls after the first return the first call's result.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopOnce.Do(func() { g.stopErr = g.shutdown(ctx) })
	return g.stopErr
}

func (g *Gateway) shutdown(ctx context.Context) error {
	var errs []error
	g.runMu.Lock()
	g.stopped = true
	close(g.done)
	if !g.running {
		// Never served: the servers never took their listeners over.
		for _, ln := range g.listeners {
			_ = ln.Close()
		}
	}
	g.runMu.Unlock()
	if g.ops != nil {
		if err := g.ops.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("admin listener: %w", err))
		}
	}
	if g.acq != nil {
		if err := g.acq.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("acquirer listener: %w", err))
		}
	}
	if err := g.stopBranchAPI(ctx); err != nil {
		errs = append(errs, fmt.Errorf("branch api: %w", err))
	}
	if g.httpSrv != nil {
		_ = g.httpSrv.Shutdown(ctx)
	}
	// The links stop before the journal: their reversal store lives in the
	// journal's database, which the journal's Shutdown closes, and their
	// last retries of deletes (Shutdown) and records go into it.
	if g.links != nil {
		if err := g.links.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("issuer links: %w", err))
		}
	}
	if g.reversals != nil {
		_ = g.reversals.Close()
	}
	if g.journal != nil {
		if err := g.journal.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("journal: %w", err))
		}
	}
	if g.sim != nil {
		_ = g.sim.Server().Shutdown(ctx)
	}
	g.shared.close()
	if g.limiter != nil {
		_ = g.limiter.Close()
	}
	if g.ops != nil {
		g.ops.zeroize()
	}
	if g.ps != nil {
		g.ps.Close()
	}
	if g.ring != nil {
		g.ring.Zeroize()
	}
	if g.tel != nil {
		// Spans are best effort: a collector that is slow or black-holes
		// connections must not hold the exit for the rest of the grace
		// period (the OTLP exporter waits up to 10 s per export and retries
		// for a minute). What is not sent within TraceFlushTimeout is
		// dropped, and said so.
		tctx, cancel := context.WithTimeout(ctx, TraceFlushTimeout)
		if err := g.tel.Shutdown(tctx); err != nil {
			g.log.Warn("traces not flushed at shutdown; the rest are dropped", "err", err)
		}
		cancel()
	}
	g.wg.Wait()
	return errors.Join(errs...)
}

// secretHex reads a hex secret from a file or an environment variable, or
// returns fallback (the embedded default's development value) when neither
// is configured.
func secretHex(file, env, fallback string) ([]byte, error) {
	var text string
	switch {
	case file != "":
		b, err := os.ReadFile(filepath.Clean(file))
		if err != nil {
			return nil, err
		}
		text = string(b)
		clear(b)
	case env != "":
		text = os.Getenv(env)
		if text == "" {
			return nil, fmt.Errorf("environment variable %s is empty", env)
		}
	default:
		text = fallback
	}
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, errors.New("not hexadecimal")
	}
	return b, nil
}

// currentKey returns the version and check value of the current version of
// key id in the flow's module: what key-change sync compares a notice with.
func (g *Gateway) currentKey(id string) (int, string, error) {
	if g.psKeys != nil {
		k, err := g.psKeys.Lookup(pinblock.KeyRef{ID: id})
		if err != nil {
			return 0, "", err
		}
		return k.Version, k.KCV, nil
	}
	k, err := g.ring.Lookup(pinblock.KeyRef{ID: id}, time.Now())
	if err != nil {
		return 0, "", err
	}
	return k.Version(), k.KCV(), nil
}
