package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"pingate/integration/redislimit"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/pinblock/keystore"
	"pingate/routing"
)

// Hot reload (SIGHUP, POST /admin/reload). A reload re-reads the
// configuration from its source (the --config file and the serve flags) and
// swaps in, while requests are in flight:
//
//   - routes, acquirers and the issuer-side key settings (routing.Flow.Reload);
//   - limits (a new redislimit.Limiter, swapped in when the limits changed);
//   - keys: the development keys and the key store are loaded into a fresh
//     pinblock.Keyring whose contents replace the running ring's in one step
//     (Keyring.Replace).
//
// Everything is loaded and checked before anything is swapped, so a reload
// either takes effect whole or not at all: a config that fails validation,
// names a key the new key set lacks, or changes a setting that needs a
// restart is refused and the running configuration stays. Each attempt is
// logged and counted in pingate.config.reloads{result=ok|refused|failed}.
// Settings that need a restart: listeners, instance, production, events,
// reversals, telemetry, log, issuer_sim, branch, limits.backend,
// security.weak_pins and the card token key, routing.institution and each
// issuer's link settings (id, institution, hosts, framing, dialect, timeout,
// echo_interval, connections), and dialects (the spec files are read at
// start-up only). An issuer's key, key_index, pin_format and
// pin_algorithm are reloadable.

// ErrReloadRefused marks a reload refused for its configuration; the
// running configuration stays in force.
var ErrReloadRefused = errors.New("reload refused")

// Reload results, the values of the result attribute of pingate.config.reloads.
const (
	ReloadOK      = "ok"
	ReloadRefused = "refused"
	ReloadFailed  = "failed"
)

// MetricConfigReloads counts reload attempts by result.
const MetricConfigReloads = "pingate.config.reloads"

// reloader is the gateway's hot-reload state. Its mutex serializes reloads
// and Shutdown.
type reloader struct {
	mu      sync.Mutex
	closed  bool
	source  func() (Config, error)
	current Config // in force: defaults applied, issuer-sim hosts resolved
	limits  *swapLimiter
	retired []*retiredRing

	reloads metric.Int64Counter
	keyReg  metric.Registration
	keys    sync.Mutex // guards keyMeta
	keyMeta []keyMeta

	admin     *adminServer
	signalsWG sync.WaitGroup
	draining  atomic.Bool // Shutdown has begun
}

// retiredRing holds key versions a reload replaced until no request can use
// them any more.
type retiredRing struct {
	ring  *pinblock.Keyring
	timer *time.Timer
}

// keyMeta describes one key version for the key metrics: never key bytes.
type keyMeta struct {
	id, usage string
	version   int
	created   time.Time
	graceEnd  time.Time // zero for a current version
}

// newReloader builds the reload state of g, whose configuration and limiter
// are in place. The limiter becomes swappable: the flow must use r.limits.
func newReloader(g *Gateway) *reloader {
	cur := g.cfg
	cur.Routing.Issuers = append([]routing.IssuerConfig(nil), cur.Routing.Issuers...)
	for i := range cur.Routing.Issuers {
		cur.Routing.Issuers[i].Hosts = append([]string(nil), cur.Routing.Issuers[i].Hosts...)
	}
	r := &reloader{current: cur, limits: &swapLimiter{cur: g.limiter}}
	m := otel.Meter("pingate/cmd")
	r.reloads, _ = m.Int64Counter(MetricConfigReloads, metric.WithDescription("configuration reloads by result: ok, refused (invalid or needs a restart), failed"))
	created, _ := m.Float64ObservableGauge("pingate.key.created_timestamp", metric.WithUnit("s"),
		metric.WithDescription("creation time (Unix seconds) of each loaded key version, from the key store (load time for keys outside it)"))
	graceEnd, _ := m.Float64ObservableGauge("pingate.key.grace_end_timestamp", metric.WithUnit("s"),
		metric.WithDescription("end of the grace window (Unix seconds) of each rotated-out key version still loaded"))
	r.keyReg, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r.keys.Lock()
		defer r.keys.Unlock()
		for _, k := range r.keyMeta {
			attrs := metric.WithAttributes(attribute.String("key", k.id), attribute.String("usage", k.usage),
				attribute.String("version", strconv.Itoa(k.version)))
			o.ObserveFloat64(created, float64(k.created.Unix()), attrs)
			if !k.graceEnd.IsZero() {
				o.ObserveFloat64(graceEnd, float64(k.graceEnd.Unix()), attrs)
			}
		}
		return nil
	}, created, graceEnd)
	r.setKeyMeta(g.ring, storedKeys(g.cfg.Security))
	return r
}

// SetReloadSource sets where Reload reads the configuration from (serve:
// the --config file and the serve flags). Without one, Reload refuses.
func (g *Gateway) SetReloadSource(src func() (Config, error)) {
	g.ops.mu.Lock()
	defer g.ops.mu.Unlock()
	g.ops.source = src
}

// ReloadReport is the result of a successful reload, as POST /admin/reload
// returns it.
type ReloadReport struct {
	Result        string `json:"result"`
	Trigger       string `json:"trigger"`
	Acquirers     int    `json:"acquirers"`
	Routes        int    `json:"routes"`
	Keys          int    `json:"keys"`
	LimitsChanged bool   `json:"limits_changed"`
}

// Reload re-reads the configuration and swaps it in (see the top of this
// file). trigger names the cause in the log ("sighup", "admin"). Errors
// wrapping ErrReloadRefused leave everything as it was; so does any other
// error (a key store or Redis that cannot be read).
func (g *Gateway) Reload(trigger string) (rep ReloadReport, err error) {
	r := g.ops
	r.mu.Lock()
	defer r.mu.Unlock()
	result := ReloadOK
	defer func() {
		if err != nil {
			result = ReloadFailed
			if errors.Is(err, ErrReloadRefused) {
				result = ReloadRefused
			}
			g.log.Error("config reload "+result+"; the running configuration stays", "trigger", trigger, "err", err)
		} else {
			g.log.Info("config reloaded", "trigger", trigger, "acquirers", rep.Acquirers, "routes", rep.Routes,
				"keys", rep.Keys, "limits_changed", rep.LimitsChanged)
		}
		r.reloads.Add(context.Background(), 1, metric.WithAttributes(attribute.String("result", result)))
	}()
	if r.closed {
		return rep, fmt.Errorf("%w: shutting down", ErrReloadRefused)
	}
	if r.source == nil {
		return rep, fmt.Errorf("%w: no configuration source", ErrReloadRefused)
	}
	next, err := r.source()
	if err != nil {
		return rep, fmt.Errorf("%w: %v", ErrReloadRefused, err)
	}
	next = next.WithDefaults()
	if err := next.Validate(); err != nil {
		return rep, fmt.Errorf("%w: %v", ErrReloadRefused, err)
	}
	g.resolveSimHosts(&next)
	if err := restartNeeded(r.current, next); err != nil {
		return rep, fmt.Errorf("%w: %v", ErrReloadRefused, err)
	}

	// Load and check everything before swapping anything.
	ring, stored, err := loadKeyring(next.Security)
	if err != nil {
		return rep, fmt.Errorf("keys: %w", err)
	}
	// The routes name the keys of the module that translates: in payShield
	// mode the HSM keys the module holds (the key file as read at start,
	// with every key change since), not the software ring.
	if err := checkKeyLabels(next.Routing, g.heldKeys(ring)); err != nil {
		ring.Zeroize()
		return rep, fmt.Errorf("%w: %v", ErrReloadRefused, err)
	}
	if g.psKeys == nil {
		if err := checkKeyModes(next.Routing, ringModes(ring, time.Now())); err != nil {
			ring.Zeroize()
			return rep, fmt.Errorf("%w: %w", ErrReloadRefused, err)
		}
	}
	var lim limiter
	if !reflect.DeepEqual(r.current.Limits, next.Limits) {
		if lim, err = g.newLimiter(next.Limits); err != nil {
			ring.Zeroize()
			return rep, fmt.Errorf("limits: %w", err)
		}
	}
	// The key changes shared through the limits' Redis follow it when a
	// connection setting changed (addresses, credentials, database,
	// timeouts, key prefix), not when only a limit did.
	var moved *sharedConn
	if g.shared != nil && lim != nil && redisMoved(r.current.Limits.Config, next.Limits.Config) {
		c, err := connectShared(next.Limits.Config)
		if err != nil {
			_ = lim.Close()
			ring.Zeroize()
			return rep, fmt.Errorf("limits: %w", err)
		}
		moved = &c
	}

	// Swap: keys first, so that routes naming new keys find them.
	retired := g.ring.Replace(ring)
	r.retire(retired, max(r.current.Routing.WithDefaults().RequestTimeout, next.Routing.WithDefaults().RequestTimeout)+time.Second)
	if lim != nil {
		if old := r.limits.swap(lim); old != lim {
			_ = old.Close()
		}
		g.limiter = lim
	}
	if moved != nil {
		g.shared.move(*moved)
	}
	if err := g.flow.Reload(next.Routing); err != nil {
		// Unreachable: next.Validate ran the same checks.
		return rep, fmt.Errorf("routing: %w", err)
	}
	rep = ReloadReport{Result: ReloadOK, Trigger: trigger, Acquirers: len(next.Routing.Acquirers), Routes: len(next.Routing.Routes),
		Keys: len(g.ring.List()), LimitsChanged: lim != nil}
	next.Routing.Routes = nil // the flow's table holds them (see New)
	r.current = next
	r.setKeyMeta(g.ring, stored)
	return rep, nil
}

// resolveSimHosts points the issuer host "issuer-sim" at the in-process
// simulator, as startSim did for the configuration the gateway started with.
func (g *Gateway) resolveSimHosts(c *Config) {
	if g.simAddr == "" {
		return
	}
	for i := range c.Routing.Issuers {
		c.Routing.Issuers[i].Hosts = append([]string(nil), c.Routing.Issuers[i].Hosts...)
		for j, h := range c.Routing.Issuers[i].Hosts {
			if h == "issuer-sim" {
				c.Routing.Issuers[i].Hosts[j] = g.simAddr
			}
		}
	}
}

// restartNeeded names the settings that differ between cur and next and
// cannot change without a restart; nil if there are none.
func restartNeeded(cur, next Config) error {
	var changed []string
	diff := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			changed = append(changed, name)
		}
	}
	diff("instance", cur.Instance, next.Instance)
	diff("production", cur.Production, next.Production)
	diff("acquirer_listener", cur.Acquirer, next.Acquirer)
	diff("http", cur.HTTP, next.HTTP)
	diff("admin", cur.Admin, next.Admin)
	diff("events", cur.Events, next.Events)
	diff("reversals", cur.Reversals, next.Reversals)
	diff("telemetry", cur.Telemetry, next.Telemetry)
	diff("log", cur.Log, next.Log)
	diff("issuer_sim", cur.IssuerSim, next.IssuerSim)
	diff("branch", cur.Branch, next.Branch)
	diff("limits.backend", cur.Limits.Backend, next.Limits.Backend)
	diff("security.weak_pins", cur.Security.WeakPINs == nil || *cur.Security.WeakPINs, next.Security.WeakPINs == nil || *next.Security.WeakPINs)
	module := func(c Config) string {
		if c.Security.Module == "" {
			return "software"
		}
		return c.Security.Module
	}
	diff("security.module", module(cur), module(next))
	diff("security.payshield", cur.Security.PayShield, next.Security.PayShield)
	diff("security.key_sync_interval", cur.Security.KeySyncInterval, next.Security.KeySyncInterval)
	diff("security.card_token_key_file", cur.Security.CardTokenKeyFile, next.Security.CardTokenKeyFile)
	diff("security.card_token_key_env", cur.Security.CardTokenKeyEnv, next.Security.CardTokenKeyEnv)
	diff("routing.institution", cur.Routing.Institution, next.Routing.Institution)
	diff("dialects", cur.Dialects, next.Dialects)
	diff("routing.issuers (ids, institutions, hosts, framing, dialects, timeouts, connections)", issuerLinks(cur.Routing), issuerLinks(next.Routing))
	if len(changed) == 0 {
		return nil
	}
	return fmt.Errorf("changed settings need a restart: %v", changed)
}

// issuerLinks returns the issuer settings the issuer links were built from.
func issuerLinks(c routing.Config) []routing.IssuerConfig {
	out := c.WithDefaults().Issuers
	for i := range out {
		out[i].Key, out[i].KeyIndex, out[i].PINFormat, out[i].PINAlgorithm = "", 0, 0, ""
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// loadKeyring loads the keys sec names into a fresh ring: the development
// keys if sec.DevKeys, then the key store. It also returns the store's
// description of its keys (nil without a store). On error nothing is kept.
func loadKeyring(sec SecurityConfig) (*pinblock.Keyring, []keystore.StoredKey, error) {
	ring := pinblock.NewKeyring(sec.RotationGrace)
	if sec.DevKeys {
		if err := devkeys.Load(ring); err != nil {
			ring.Zeroize()
			return nil, nil, err
		}
	}
	if sec.KeyStore == "" {
		return ring, nil, nil
	}
	st, err := OpenKeyStore(sec)
	if err != nil {
		ring.Zeroize()
		return nil, nil, err
	}
	defer st.Close()
	if _, err := st.Load(ring, time.Now()); err != nil {
		ring.Zeroize()
		return nil, nil, fmt.Errorf("security.key_store: %w", err)
	}
	stored, err := st.List()
	if err != nil {
		ring.Zeroize()
		return nil, nil, fmt.Errorf("security.key_store: %w", err)
	}
	return ring, stored, nil
}

func OpenKeyStore(sec SecurityConfig) (*keystore.Store, error) {
	st, err := keystore.OpenStore(keystore.StoreConfig{
		Path: sec.KeyStore, LogPath: sec.CustodyLog, Grace: sec.RotationGrace,
		LMK: keystore.LMKRef{File: sec.LMKFile, Env: sec.LMKEnv},
	})
	if err != nil {
		return nil, fmt.Errorf("security.key_store: %w", err)
	}
	return st, nil
}

// storedKeys lists the key store of sec for the key metrics; nil without a
// store or when it cannot be read (the keys loaded at start-up were read
// from it moments before).
func storedKeys(sec SecurityConfig) []keystore.StoredKey {
	ks, _ := listKeyStore(sec)
	return ks
}

// listKeyStore lists the key store of sec (nil without one).
func listKeyStore(sec SecurityConfig) ([]keystore.StoredKey, error) {
	if sec.KeyStore == "" {
		return nil, nil
	}
	st, err := OpenKeyStore(sec)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ks, err := st.List()
	if err != nil {
		return nil, fmt.Errorf("security.key_store: %w", err)
	}
	return ks, nil
}

// heldKeys are the keys the routes may name: in payShield mode the HSM keys
// the module holds (the key file as read at start, with every key change
// since), else ring's.
func (g *Gateway) heldKeys(ring *pinblock.Keyring) []pinblock.KeyInfo {
	if g.psKeys == nil {
		return ring.List()
	}
	var held []pinblock.KeyInfo
	for _, k := range g.psKeys.List() {
		held = append(held, pinblock.KeyInfo{ID: k.ID})
	}
	return held
}

// checkKeyLabels names every key label of rc that is not among keys.
func checkKeyLabels(rc routing.Config, keys []pinblock.KeyInfo) error {
	held := map[string]bool{}
	for _, k := range keys {
		held[k.ID] = true
	}
	var errs []error
	for _, a := range rc.Acquirers {
		idx := make([]int, 0, len(a.Keys))
		for i := range a.Keys {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			if !held[a.Keys[i]] {
				errs = append(errs, fmt.Errorf("routing.acquirers (%s): keys[%d]: key %q is not loaded", a.ID, i, a.Keys[i]))
			}
		}
		if a.ZMK != "" && !held[a.ZMK] {
			errs = append(errs, fmt.Errorf("routing.acquirers (%s): zmk: key %q is not loaded", a.ID, a.ZMK))
		}
	}
	for _, is := range rc.Issuers {
		if !held[is.Key] {
			errs = append(errs, fmt.Errorf("routing.issuers (%s): key: key %q is not loaded", is.ID, is.Key))
		}
	}
	return errors.Join(errs...)
}

// setKeyMeta records the loaded key versions for the key metrics: creation
// times from the store where it has them, and the end of each rotated-out
// version's grace window.
func (r *reloader) setKeyMeta(ring *pinblock.Keyring, stored []keystore.StoredKey) {
	type idv struct {
		id string
		v  int
	}
	byVersion := map[idv]keystore.StoredKey{}
	for _, s := range stored {
		byVersion[idv{s.ID, s.Version}] = s
	}
	grace := r.current.Security.RotationGrace
	list := ring.List() // by id, then version: the last of an id is current
	meta := make([]keyMeta, 0, len(list))
	for i, k := range list {
		m := keyMeta{id: k.ID, usage: string(k.Usage), version: k.Version, created: k.Created}
		if s, ok := byVersion[idv{k.ID, k.Version}]; ok {
			m.created = s.Created
			if s.RetiredAt != nil && (i+1 < len(list) && list[i+1].ID == k.ID) {
				m.graceEnd = s.RetiredAt.Add(grace)
			}
		}
		meta = append(meta, m)
	}
	r.keys.Lock()
	r.keyMeta = meta
	r.keys.Unlock()
}

// retire zeroizes ring after delay, when no request that looked its keys up
// before the swap can still be running. Shutdown zeroizes it sooner.
func (r *reloader) retire(ring *pinblock.Keyring, delay time.Duration) {
	// Forget the rings whose timers have fired (Zeroize empties a ring).
	live := r.retired[:0]
	for _, rr := range r.retired {
		if len(rr.ring.List()) > 0 {
			live = append(live, rr)
		}
	}
	clear(r.retired[len(live):])
	r.retired = live
	rr := &retiredRing{ring: ring}
	rr.timer = time.AfterFunc(delay, ring.Zeroize)
	r.retired = append(r.retired, rr)
}

// stop marks the gateway as draining (GET /readyz answers 503 from now on),
// refuses further reloads and stops the admin listener; Shutdown calls it
// first.
func (r *reloader) stop(ctx context.Context) error {
	r.draining.Store(true)
	r.mu.Lock()
	r.closed = true
	adm := r.admin
	r.mu.Unlock()
	if adm != nil {
		return adm.srv.Shutdown(ctx)
	}
	return nil
}

// zeroize zeroizes the retired rings at once and unregisters the key
// metrics; Shutdown calls it once no request runs.
func (r *reloader) zeroize() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rr := range r.retired {
		rr.timer.Stop()
		rr.ring.Zeroize()
	}
	r.retired = nil
	if r.keyReg != nil {
		_ = r.keyReg.Unregister()
	}
}

// swapLimiter is the flow's limiter: it forwards to the current limiter,
// which a reload replaces. swap waits for the calls in progress on the old
// limiter (each bounded by its Redis timeouts and the request's deadline),
// so the old one can be closed as soon as swap returns.
type swapLimiter struct {
	mu  sync.RWMutex
	cur limiter
}

var _ routing.Limiter = (*swapLimiter)(nil)

// Allow implements routing.Limiter.
func (s *swapLimiter) Allow(ctx context.Context, req *routing.Request) (routing.Decision, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur.Allow(ctx, req)
}

// Record implements routing.Limiter.
func (s *swapLimiter) Record(ctx context.Context, req *routing.Request, code string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cur.Record(ctx, req, code)
}

var _ routing.SharedWindow = (*swapLimiter)(nil)

// Claim implements routing.SharedWindow: the current limiter's shared window
// (Redis), or without one (memory) its Allow, the request claimed for the
// flow's own in-memory window only.
func (s *swapLimiter) Claim(ctx context.Context, req *routing.Request, window time.Duration) (routing.Claim, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w, ok := s.cur.(routing.SharedWindow); ok {
		return w.Claim(ctx, req, window)
	}
	d, err := s.cur.Allow(ctx, req)
	return routing.Claim{First: err == nil, Decision: d}, err
}

// Finish implements routing.SharedWindow: the current limiter's, or without
// a shared window its Record of entry.LimitCode.
func (s *swapLimiter) Finish(ctx context.Context, req *routing.Request, entry routing.WindowEntry, window time.Duration) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w, ok := s.cur.(routing.SharedWindow); ok {
		return w.Finish(ctx, req, entry, window)
	}
	if entry.LimitCode == "" {
		return nil
	}
	return s.cur.Record(ctx, req, entry.LimitCode)
}

var _ routing.WindowReversals = (*swapLimiter)(nil)

// Lookup implements routing.WindowReversals: the current limiter's shared
// window, or without one (memory) nothing found: the flow's own window is
// all there is.
func (s *swapLimiter) Lookup(ctx context.Context, id routing.WindowID) (routing.WindowRecord, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w, ok := s.cur.(routing.WindowReversals); ok {
		return w.Lookup(ctx, id)
	}
	return routing.WindowRecord{}, false, nil
}

// ClaimReversal implements routing.WindowReversals (the flow claims only a
// record Lookup found).
func (s *swapLimiter) ClaimReversal(ctx context.Context, id routing.WindowID) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w, ok := s.cur.(routing.WindowReversals); ok {
		return w.ClaimReversal(ctx, id)
	}
	return false, nil
}

// ReleaseReversal implements routing.WindowReversals.
func (s *swapLimiter) ReleaseReversal(ctx context.Context, id routing.WindowID) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w, ok := s.cur.(routing.WindowReversals); ok {
		return w.ReleaseReversal(ctx, id)
	}
	return nil
}

// Forbid implements routing.WindowReversals; without a shared window there
// is nothing to mark (the flow's own window is marked).
func (s *swapLimiter) Forbid(ctx context.Context, id routing.WindowID, window time.Duration) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if w, ok := s.cur.(routing.WindowReversals); ok {
		return w.Forbid(ctx, id, window)
	}
	return true, nil
}

func (s *swapLimiter) swap(next limiter) (old limiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, s.cur = s.cur, next
	return old
}

// newLimiter builds the limiter of lc for a reload: a new Redis limiter, or
// for the memory backend (a reload cannot change the backend) the gateway's
// own, reconfigured, so that its counts survive the reload.
func (g *Gateway) newLimiter(lc LimitsConfig) (limiter, error) {
	if lc.Backend == "memory" {
		mem, ok := g.limiter.(*redislimit.Memory)
		if !ok {
			return nil, errors.New("memory limits: the gateway runs no in-process limiter")
		}
		if err := mem.Reconfigure(lc.Config); err != nil {
			return nil, err
		}
		return mem, nil
	}
	return redislimit.New(lc.Config)
}

// notReadyWhileDraining answers GET /readyz with 503 once Shutdown has begun,
// so that a load balancer stops sending new connections to an instance that
// is draining; every other path goes to next.
func (r *reloader) notReadyWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/readyz" && r.draining.Load() {
			adminJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "checks": map[string]string{"shutdown": "draining"}})
			return
		}
		next.ServeHTTP(w, req)
	})
}
