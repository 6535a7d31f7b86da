package branchapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"

	"pingate/routing"
)

// Flow is what the API needs of routing.Flow: the one PIN-operation flow that
// the ISO 8583 listener uses too (limits, translation, issuer, event, trace).
type Flow interface {
	// Handle runs one PIN operation to its final, recorded outcome.
	Handle(ctx context.Context, req *routing.Request) routing.Outcome
	// Acquirer returns the routing configuration of an acquirer id.
	Acquirer(id string) (routing.AcquirerConfig, bool)
}

var _ Flow = (*routing.Flow)(nil)

// Server is the branch and self-service HTTPS API. Build it with New, run it
// with Serve, stop it with Shutdown.
type Server struct {
	cfg    Config
	flow   Flow
	log    *slog.Logger
	now    func() time.Time
	st     *store
	rev    *revocation
	srv    *http.Server
	tlsCfg *tls.Config
	tracer trace.Tracer
	m      apiMetrics

	serving  atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New validates cfg, loads the server certificate, the client CAs and the
// CRL, and builds a server over flow. log may be nil (no log).
func New(cfg Config, flow Flow, logger *slog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if flow == nil {
		return nil, errors.New("branch api: no flow")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, flow: flow, log: logger, now: time.Now,
		st:     newStore(cfg.RecordTTL, cfg.MaxRecords),
		tracer: otel.Tracer("pingate/branchapi"),
		m:      newAPIMetrics(),
		stop:   make(chan struct{}),
	}
	tc, err := s.serverTLS()
	if err != nil {
		return nil, err
	}
	s.tlsCfg = tc
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		// TLS handshake failures (no, unknown, expired or revoked client
		// certificates) are logged by net/http; they carry no secret.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve answers HTTPS (HTTP/1.1) on ln until Shutdown; it returns
// http.ErrServerClosed after Shutdown. It may be called once. At most
// MaxConns connections are open at once; the rest wait in ln's backlog.
func (s *Server) Serve(ln net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("branch api: Serve called twice")
	}
	s.wg.Add(1)
	go s.sweepLoop()
	return s.srv.Serve(tls.NewListener(netutil.LimitListener(ln, s.cfg.MaxConns), s.tlsCfg))
}

// Shutdown stops accepting connections, waits for in-flight requests (each
// runs its operation to its recorded outcome) until ctx expires, and stops
// the record sweeper. Pending approvals are lost with the process.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	return err
}

// sweepLoop drops expired records every minute (or every tenth of the TTL).
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	every := min(time.Minute, s.cfg.RecordTTL/10)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.st.sweep(s.now())
		}
	}
}

// apiMetrics count the API's answers; the flow's own metrics carry the
// channel of every operation.
type apiMetrics struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
}

func newAPIMetrics() apiMetrics {
	m := otel.Meter("pingate/branchapi")
	var am apiMetrics
	// Instrument creation fails only for invalid names, which are static here.
	am.requests, _ = m.Int64Counter("pingate.branch.requests",
		metric.WithDescription("branch API answers by route, method, status and channel"))
	am.duration, _ = m.Float64Histogram("pingate.branch.request.duration", metric.WithUnit("s"),
		metric.WithDescription("branch API time from request to answer"),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	return am
}

func (m apiMetrics) record(ctx context.Context, route, method, channel string, status int, d time.Duration) {
	attrs := metric.WithAttributes(
		attribute.String("route", route),
		attribute.String("method", method),
		attribute.Int("status", status),
		attribute.String("channel", channel),
	)
	m.requests.Add(ctx, 1, attrs)
	m.duration.Record(ctx, d.Seconds(), attrs)
}

// String names the server for logs.
func (s *Server) String() string { return fmt.Sprintf("branch api %s", s.cfg.Addr) }
