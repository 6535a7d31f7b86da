package records

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// APIConfig configures the inquiry API.
type APIConfig struct {
	// Addr is the HTTPS listen address, e.g. "127.0.0.1:8445".
	Addr string
	// CertFile and KeyFile are the server certificate chain and its key
	// (PEM files; references, never the key itself).
	CertFile, KeyFile string
	// ClientCAFile is the PEM bundle of the CAs whose client certificates
	// may call the API (the bank's or agency's front ends). Required.
	ClientCAFile string
	// MaxPageSize bounds ?limit=. Default 100.
	MaxPageSize int
	// MaxPeriod bounds a statement's period. Default 366 days.
	MaxPeriod time.Duration
	// MaxConns bounds the open client connections (default
	// DefaultAPIMaxConns); a connection beyond it waits in the listen
	// backlog until one closes.
	MaxConns int
}

// DefaultAPIMaxConns is APIConfig.MaxConns when it is zero.
const DefaultAPIMaxConns = 256

// Validate names the missing values.
func (c APIConfig) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("api addr: required"))
	}
	if c.CertFile == "" || c.KeyFile == "" {
		errs = append(errs, errors.New("api cert and key files: required"))
	}
	if c.ClientCAFile == "" {
		errs = append(errs, errors.New("api client CA file: required (mutual TLS)"))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("api max connections %d: must not be negative", c.MaxConns))
	}
	return errors.Join(errs...)
}

// API is the cardholder inquiry API: HTTPS with mutual TLS
// (docs/records-openapi.yaml).
type API struct {
	cfg     APIConfig
	store   *Store
	metrics *Metrics
	log     *slog.Logger
	srv     *http.Server
}

// NewAPI checks cfg, loads the certificates and returns the API; Serve
// starts it.
func NewAPI(cfg APIConfig, store *Store, m *Metrics, log *slog.Logger) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxPageSize <= 0 {
		cfg.MaxPageSize = 100
	}
	if cfg.MaxPeriod <= 0 {
		cfg.MaxPeriod = 366 * 24 * time.Hour
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultAPIMaxConns
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("records api server certificate: %w", err)
	}
	pemCAs, err := os.ReadFile(cfg.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("records api client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCAs) {
		return nil, fmt.Errorf("records api client CA %s: no PEM certificate", cfg.ClientCAFile)
	}
	a := &API{cfg: cfg, store: store, metrics: m, log: log}
	a.srv = &http.Server{
		Handler: a.Handler(),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// Serve answers HTTPS on ln until Shutdown; it then returns
// http.ErrServerClosed. At most MaxConns connections are open at once; the
// rest wait in ln's backlog.
func (a *API) Serve(ln net.Listener) error {
	return a.srv.ServeTLS(netutil.LimitListener(ln, a.cfg.MaxConns), "", "")
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (a *API) Shutdown(ctx context.Context) error { return a.srv.Shutdown(ctx) }

// OpenAPI is the API's OpenAPI 3.1 document, served at /v1/openapi.yaml;
// docs/records-openapi.yaml is a copy that a test keeps identical.
//
//go:embed openapi.yaml
var OpenAPI []byte

var (
	cardTokenRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	eventIDRE   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	// cursorRE is the `after` parameter's pattern in the OpenAPI document:
	// strconv alone would also take a sign and 19 digits.
	cursorRE = regexp.MustCompile(`^[0-9]{1,18}$`)
)

// Handler returns the API's routes (without TLS: Serve adds it). Health,
// readiness and metrics are also served by AdminHandler.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cards/{card_token}/operations", a.history)
	mux.HandleFunc("GET /v1/cards/{card_token}/statement", a.statement)
	mux.HandleFunc("GET /v1/operations/{event_id}", a.operation)
	mux.HandleFunc("GET /v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(OpenAPI)
	})
	a.admin(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "not-found", "No such resource", "")
	})
	return securityHeaders(mux)
}

// AdminHandler serves /healthz, /readyz and /metrics only, for a plain-HTTP
// admin listener that probes and Prometheus can reach without a client
// certificate. Bind it to loopback or a cluster-internal address.
func AdminHandler(store *Store, m *Metrics) http.Handler {
	a := &API{store: store, metrics: m}
	mux := http.NewServeMux()
	a.admin(mux)
	return mux
}

func (a *API) admin(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.store.Ping(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if a.metrics != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{}))
	}
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// cardToken reads and checks the path's card token. Anything else (a PAN
// above all) is refused without being repeated.
func cardToken(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("card_token")
	if !cardTokenRE.MatchString(t) {
		problem(w, http.StatusBadRequest, "invalid-card-token",
			"The card token must be 32 lowercase hex digits (a keyed HMAC of the PAN, never the PAN)", "")
		return "", false
	}
	return t, true
}

// historyPage is the body of GET /v1/cards/{card_token}/operations.
type historyPage struct {
	CardToken  string      `json:"card_token"`
	Operations []Operation `json:"operations"`
	// Next is the cursor of the next page (?after=), absent on the last.
	Next string `json:"next,omitempty"`
}

func (a *API) history(w http.ResponseWriter, r *http.Request) {
	card, ok := cardToken(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > a.cfg.MaxPageSize {
			problem(w, http.StatusBadRequest, "invalid-parameter", "A query parameter is invalid",
				fmt.Sprintf("limit must be an integer from 1 to %d", a.cfg.MaxPageSize))
			return
		}
		limit = n
	}
	var after int64
	if v := q.Get("after"); v != "" || q.Has("after") {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || !cursorRE.MatchString(v) {
			problem(w, http.StatusBadRequest, "invalid-parameter", "A query parameter is invalid",
				"after must be the next cursor of a previous page")
			return
		}
		after = n
	}
	ops, next, err := a.store.History(r.Context(), card, after, limit)
	if err != nil {
		a.unavailable(w, err)
		return
	}
	p := historyPage{CardToken: card, Operations: ops}
	if next > 0 {
		p.Next = strconv.FormatInt(next, 10)
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *API) operation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("event_id")
	if !eventIDRE.MatchString(id) {
		problem(w, http.StatusBadRequest, "invalid-event-id", "The event id must be a lowercase UUID", "")
		return
	}
	o, err := a.store.Operation(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		problem(w, http.StatusNotFound, "not-found", "No such resource", "no operation with this event id")
		return
	}
	if err != nil {
		a.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (a *API) statement(w http.ResponseWriter, r *http.Request) {
	card, ok := cardToken(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	from, err1 := time.Parse(time.DateOnly, q.Get("from"))
	to, err2 := time.Parse(time.DateOnly, q.Get("to"))
	if err1 != nil || err2 != nil {
		problem(w, http.StatusBadRequest, "invalid-parameter", "A query parameter is invalid",
			"from and to are required dates, YYYY-MM-DD (UTC days, both inclusive)")
		return
	}
	if to.Before(from) || to.Sub(from) >= a.cfg.MaxPeriod {
		problem(w, http.StatusBadRequest, "invalid-parameter", "A query parameter is invalid",
			fmt.Sprintf("to must not be before from, and the period at most %d days", int(a.cfg.MaxPeriod.Hours()/24)))
		return
	}
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "html" {
		problem(w, http.StatusBadRequest, "invalid-parameter", "A query parameter is invalid", "format must be json or html")
		return
	}
	st, err := a.store.Statement(r.Context(), card, from, to)
	if err != nil {
		a.unavailable(w, err)
		return
	}
	if format == "html" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(http.StatusOK)
		_ = RenderStatementHTML(w, st)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *API) unavailable(w http.ResponseWriter, err error) {
	a.log.Warn("records api: database", "err", err)
	problem(w, http.StatusServiceUnavailable, "service-unavailable", "The records database cannot answer now", "")
}

// apiProblem is an RFC 9457 problem details object; it never repeats a
// value from the request.
type apiProblem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ProblemTypeBase prefixes the problem types, as in the branch API.
const ProblemTypeBase = "urn:pingate:problem:"

func problem(w http.ResponseWriter, status int, slug, title, detail string) {
	b, _ := json.Marshal(apiProblem{Type: ProblemTypeBase + slug, Title: title, Status: status, Detail: detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem(w, http.StatusInternalServerError, "internal", "Internal error", "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

var statementTmpl = template.Must(template.New("statement").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PIN operations statement {{.From}} to {{.To}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px}
@media print{body{margin:0}}</style></head>
<body><h1>Statement of PIN operations</h1>
<p>Card token <code>{{.CardToken}}</code><br>Period {{.From}} to {{.To}} (UTC, inclusive)</p>
{{if .Operations}}<table><thead><tr><th>Completed (UTC)</th><th>Operation</th><th>Outcome</th><th>Code</th><th>Channel</th><th>Acquirer</th><th>Terminal</th><th>Note</th></tr></thead><tbody>
{{range .Operations}}<tr><td>{{.Completed.Format "2006-01-02 15:04:05"}}</td><td>{{.Operation}}</td><td>{{.Outcome}}</td><td>{{.ResponseCode}}</td><td>{{.Channel}}</td><td>{{.Acquirer}}</td><td>{{.Terminal}}</td><td>{{if .ReversedBy}}reversed by the acquirer{{else if .Reverses}}reverses {{.Reverses}}{{end}}</td></tr>
{{end}}</tbody></table>{{else}}<p>No PIN operations in this period.</p>{{end}}
<p>This statement is free of charge.</p></body></html>
`))

// RenderStatementHTML writes st as a printable HTML page.
func RenderStatementHTML(w interface{ Write([]byte) (int, error) }, st Statement) error {
	return statementTmpl.Execute(w, st)
}
