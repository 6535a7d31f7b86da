package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"pingate/integration/redislimit"
	"pingate/pinblock"
	"pingate/routing"
)

// shared is what gateway instances share through the limits' Redis besides
// the limits and the duplicate window (limits.backend redis only): the
// acquirers' online key changes, which every instance takes (docs/design.md,
// "Many instances"). It follows the limits' Redis: a reload that moves
// limits.addrs (or any other Redis setting) moves it too (sharedConn).
type shared struct {
	mu   sync.Mutex
	conn sharedConn
	keys *keySync
}

// sharedConn is a connection to the limits' Redis and the key changes kept
// in it.
type sharedConn struct {
	rdb  redis.UniversalClient
	keys *redislimit.KeyChanges
}

// connectShared connects to the Redis of lc.
func connectShared(lc redislimit.Config) (sharedConn, error) {
	rdb, err := redislimit.NewClient(lc)
	if err != nil {
		return sharedConn{}, fmt.Errorf("limits: %w", err)
	}
	kc, err := redislimit.NewKeyChanges(rdb, lc.WithDefaults().KeyPrefix)
	if err != nil {
		_ = rdb.Close()
		return sharedConn{}, err
	}
	return sharedConn{rdb: rdb, keys: kc}, nil
}

// startShared connects the shared state when the limits are in Redis; nil
// otherwise (one instance: its memory is all there is).
func (g *Gateway) startShared(current func(id string) (int, string, error)) (*shared, error) {
	if g.cfg.Limits.Backend != "redis" {
		return nil, nil
	}
	c, err := connectShared(g.cfg.Limits.Config)
	if err != nil {
		return nil, err
	}
	s := &shared{conn: c}
	s.keys = newKeySync(c.keys, g.sm, current, g.cfg.Instance, g.cfg.Security.KeySyncInterval, g.log)
	return s, nil
}

// move makes c the shared state's connection (a reload that changed the
// limits' Redis) and closes the previous one: a sync or publish in progress
// on it fails and is tried again on c (a notice not published stays
// pending).
func (s *shared) move(c sharedConn) {
	s.mu.Lock()
	old := s.conn
	s.conn = c
	s.mu.Unlock()
	s.keys.use(c.keys)
	_ = old.rdb.Close()
}

func (s *shared) close() {
	if s == nil {
		return
	}
	s.keys.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.rdb.Close()
}

// keySync carries online key changes (0800/161) between instances. The
// instance that takes one publishes it (the key as the acquirer sent it,
// under the ZMK, never in clear) once its own module and key store hold it;
// every instance reads the latest changes every security.key_sync_interval
// (and once at start-up, before serving) and imports into its running module
// the ones newer than the version it holds. The custody record is written
// once, by the instance that took the 0800; the others only load the key,
// as a reload of the shared key store would.
type keySync struct {
	store    atomic.Pointer[redislimit.KeyChanges] // moved by a reload (shared.move)
	sm       pinblock.SecurityModule
	current  func(id string) (version int, kcv string, err error)
	instance string
	interval time.Duration
	log      *slog.Logger
	taken    metric.Int64Counter

	mu      sync.Mutex
	pending []redislimit.KeyChange // taken here, not yet published
	noted   map[string]string      // key id → notice (NewKCV) taken or left for good
	failed  map[string]string      // key id → notice whose import failed (logged once, retried)

	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
	started atomic.Bool
}

func newKeySync(store *redislimit.KeyChanges, sm pinblock.SecurityModule, current func(string) (int, string, error),
	instance string, interval time.Duration, log *slog.Logger) *keySync {
	taken, _ := otel.Meter("pingate/gateway").Int64Counter("pingate.keys.synced",
		metric.WithDescription("online key changes taken from another instance (result: taken, failed) or published (result: published, publish_failed)"))
	k := &keySync{sm: sm, current: current, instance: instance, interval: interval, log: log, taken: taken,
		noted: map[string]string{}, failed: map[string]string{}, quit: make(chan struct{}), done: make(chan struct{})}
	k.store.Store(store)
	return k
}

// use makes the key changes in store the ones published and read from now.
func (k *keySync) use(store *redislimit.KeyChanges) { k.store.Store(store) }

// run syncs every interval until stop. Its goroutine is owned by keySync:
// stop ends it and waits.
func (k *keySync) run() {
	k.started.Store(true)
	go func() {
		defer close(k.done)
		t := time.NewTicker(k.interval)
		defer t.Stop()
		for {
			select {
			case <-k.quit:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), k.interval+2*time.Second)
				k.sync(ctx)
				cancel()
			}
		}
	}()
}

func (k *keySync) stop() {
	k.once.Do(func() {
		close(k.quit)
		if k.started.Load() {
			<-k.done
		}
	})
}

// publish shares a key change this instance took; a notice Redis does not
// take now is kept and published by the next sync.
func (k *keySync) publish(ctx context.Context, req pinblock.ImportRequest, info pinblock.KeyInfo) {
	c := redislimit.KeyChange{ID: req.ID, Usage: string(req.Usage), Algorithm: string(req.Algorithm), ZMK: req.ZMK.ID,
		KeyBlock: req.KeyBlock, KCV: req.KCV, Version: info.Version, NewKCV: info.KCV, Instance: k.instance, At: time.Now().UTC()}
	if len(req.Enciphered) > 0 {
		c.Enciphered = hex.EncodeToString(req.Enciphered)
	}
	k.mu.Lock()
	k.noted[c.ID] = c.NewKCV
	k.mu.Unlock()
	if err := k.store.Load().Publish(ctx, c); err != nil {
		k.mu.Lock()
		k.pending = append(k.pending, c)
		k.mu.Unlock()
		k.count(ctx, "publish_failed")
		k.log.ErrorContext(ctx, "key change taken here but not yet shared with the other instances; retrying", "key", c.ID,
			"version", c.Version, "kcv", c.NewKCV, "err", err)
		return
	}
	k.count(ctx, "published")
}

func (k *keySync) count(ctx context.Context, result string) {
	k.taken.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// sync publishes what is pending, then takes every change newer than this
// instance holds.
func (k *keySync) sync(ctx context.Context) {
	k.mu.Lock()
	pending := k.pending
	k.pending = nil
	k.mu.Unlock()
	for i, c := range pending {
		if err := k.store.Load().Publish(ctx, c); err != nil {
			k.mu.Lock()
			k.pending = append(pending[i:], k.pending...)
			k.mu.Unlock()
			return
		}
		k.count(ctx, "published")
		k.log.InfoContext(ctx, "key change shared with the other instances", "key", c.ID, "version", c.Version, "kcv", c.NewKCV)
	}
	changes, err := k.store.Load().Latest(ctx)
	if err != nil {
		k.log.WarnContext(ctx, "key changes of other instances not read", "err", err)
		return
	}
	for _, c := range changes {
		k.take(ctx, c)
	}
}

// take imports c unless this instance holds its version or a later one.
func (k *keySync) take(ctx context.Context, c redislimit.KeyChange) {
	k.mu.Lock()
	seen := k.noted[c.ID] == c.NewKCV
	k.mu.Unlock()
	if seen {
		return
	}
	note := func() {
		k.mu.Lock()
		k.noted[c.ID] = c.NewKCV
		k.mu.Unlock()
	}
	version, kcv, err := k.current(c.ID)
	switch {
	case err != nil:
		note()
		k.log.WarnContext(ctx, "another instance changed a key this one does not hold", "key", c.ID, "instance", c.Instance)
		return
	case version >= c.Version || kcv == c.NewKCV:
		note()
		if version == c.Version && kcv != c.NewKCV {
			k.log.ErrorContext(ctx, "another instance holds a different key at the same version; left as it is",
				"key", c.ID, "version", version, "kcv", kcv, "their_kcv", c.NewKCV, "instance", c.Instance)
		}
		return
	}
	req := pinblock.ImportRequest{ID: c.ID, Usage: pinblock.Usage(c.Usage), Algorithm: pinblock.Algorithm(c.Algorithm),
		KeyBlock: c.KeyBlock, ZMK: pinblock.KeyRef{ID: c.ZMK}, KCV: c.KCV, Rotate: true,
		Who: "instance " + c.Instance, Why: "key change (0800/161) taken by instance " + c.Instance}
	if c.Enciphered != "" {
		if req.Enciphered, err = hex.DecodeString(c.Enciphered); err != nil {
			note()
			k.count(ctx, "failed")
			k.log.ErrorContext(ctx, "key change notice does not decode", "key", c.ID, "instance", c.Instance)
			return
		}
		defer clear(req.Enciphered)
	}
	info, err := k.sm.Import(ctx, req)
	if err != nil {
		// Tried again at the next sync (the module may be unreachable for
		// a while); logged once per notice.
		k.count(ctx, "failed")
		k.mu.Lock()
		first := k.failed[c.ID] != c.NewKCV
		k.failed[c.ID] = c.NewKCV
		k.mu.Unlock()
		if first {
			k.log.ErrorContext(ctx, "key change of another instance not taken; retrying every sync", "key", c.ID, "version", c.Version,
				"kcv", c.NewKCV, "instance", c.Instance, "err", err)
		}
		return
	}
	note()
	k.count(ctx, "taken")
	k.log.InfoContext(ctx, "key change of another instance taken", "key", c.ID, "version", info.Version, "kcv", info.KCV,
		"instance", c.Instance)
}

// sharedKeyChanges is the flow's KeyImporter when instances share key
// changes: the 0800 is taken as before (key store and custody log, or the
// module alone), then published for the other instances.
type sharedKeyChanges struct {
	inner routing.KeyImporter
	sync  *keySync
}

var _ routing.KeyImporter = (*sharedKeyChanges)(nil)

func (s *sharedKeyChanges) Import(ctx context.Context, req pinblock.ImportRequest) (pinblock.KeyInfo, error) {
	info, err := s.inner.Import(ctx, req)
	if err == nil && req.Rotate {
		s.sync.publish(ctx, req, info)
	}
	return info, err
}

// The Redis limiter's shared window lets any instance take a 0420.
var _ routing.WindowReversals = (*redislimit.Limiter)(nil)

// redisMoved reports whether a and b connect differently: another server,
// credentials, database, timeouts or key prefix (the limits themselves do
// not count).
func redisMoved(a, b redislimit.Config) bool {
	conn := func(c redislimit.Config) redislimit.Config {
		c = c.WithDefaults()
		return redislimit.Config{Mode: c.Mode, Addrs: c.Addrs, MasterName: c.MasterName, Username: c.Username,
			PasswordEnv: c.PasswordEnv, DB: c.DB, DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, KeyPrefix: c.KeyPrefix}
	}
	return !reflect.DeepEqual(conn(a), conn(b))
}
