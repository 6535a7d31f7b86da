package redislimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"pingate/routing"
)

// Memory applies the limits of a Config inside one process, without Redis:
// the gateway's embedded default (limits backend "memory"). Its decisions are
// the Limiter's — card operations per calendar day, wrong PINs in the last
// hour (PIN changes only), terminal and acquirer GCRA throughput, the same
// order of refusals, the same refund of a card's count on a throughput
// refusal, the same Record rules — on the process's clock, and its counts are
// this instance's only and lost on restart. It opens no connection and no
// listener. It is safe for concurrent use.
type Memory struct {
	mu    sync.Mutex
	cfg   Config
	zone  *time.Location
	cards map[string]*cardState   // by card token
	tats  map[throughputKey]int64 // GCRA theoretical arrival time, µs
	// sweepAt is when Allow next drops state that no longer limits anything.
	sweepAt time.Time
	now     func() time.Time
	*meter
}

// cardState is one card's counts: operations on day, and the times of its
// wrong-PIN marks in the window, oldest first.
type cardState struct {
	day   string
	ops   int
	marks []time.Time
}

var _ routing.Limiter = (*Memory)(nil)

// sweepEvery is how often Allow drops expired card and throughput state.
const sweepEvery = time.Minute

// NewMemory validates cfg and returns an in-process limiter applying it.
// The connection fields of cfg (Mode, Addrs, …) are not used and need not
// be set.
func NewMemory(cfg Config) (*Memory, error) {
	cfg, zone, err := memoryConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Memory{cfg: cfg, zone: zone, cards: map[string]*cardState{}, tats: map[throughputKey]int64{},
		now: time.Now, meter: newMeter()}, nil
}

// memoryConfig validates the limits of cfg, not its connection.
func memoryConfig(cfg Config) (Config, *time.Location, error) {
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{"127.0.0.1:0"} // unused: Validate wants an address
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeStandalone
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, nil, err
	}
	cfg = cfg.WithDefaults()
	zone, err := time.LoadLocation(cfg.DayZone)
	if err != nil {
		return Config{}, nil, fmt.Errorf("redislimit: day_zone %q: %w", cfg.DayZone, err)
	}
	return cfg, zone, nil
}

// Reconfigure applies the limits of cfg from now on, keeping every count:
// a reload with new limits does not forget today's operations or the wrong
// PINs of the last hour. On error nothing changes.
func (m *Memory) Reconfigure(cfg Config) error {
	cfg, zone, err := memoryConfig(cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg, m.zone = cfg, zone
	return nil
}

// Config returns the configuration in effect, defaults applied.
func (m *Memory) Config() Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Close releases nothing (there is no connection); it exists so that Memory
// and Limiter stop alike.
func (m *Memory) Close() error { return nil }

// Allow decides whether req may proceed, as Limiter.Allow does. A refusal is
// a Decision with Allowed false and nil error; the only error is
// ErrNoCardToken, for a request without a CardToken (refused, fail closed).
func (m *Memory) Allow(ctx context.Context, req *routing.Request) (routing.Decision, error) {
	if req.CardToken == "" {
		return m.noCardToken(ctx)
	}
	now := m.now()
	m.mu.Lock()
	d := m.decide(req, now)
	m.mu.Unlock()
	m.count(ctx, d)
	return d, nil
}

// decide is one decision; called with mu held. Like the Limiter's pipeline
// it charges the terminal and the acquirer whatever the card's verdict, and
// counts the card's operation only when every limit allows.
func (m *Memory) decide(req *routing.Request, now time.Time) routing.Decision {
	if !now.Before(m.sweepAt) {
		m.sweep(now)
		m.sweepAt = now.Add(sweepEvery)
	}
	term, acq := true, true
	if req.Acquirer != "" && req.Terminal != "" {
		term = m.gcra(throughputKey{req.Acquirer, req.Terminal}, now, interval(m.cfg.TerminalRPS), m.cfg.TerminalBurst)
	}
	if req.Acquirer != "" {
		acq = m.gcra(throughputKey{acquirer: req.Acquirer}, now, interval(m.cfg.AcquirerRPS), m.cfg.AcquirerBurst)
	}

	c := m.card(req.CardToken, now)
	if req.Operation == routing.OpChange && m.cfg.CardWrongPINPerHour > 0 && len(c.marks) >= m.cfg.CardWrongPINPerHour {
		return refuse(routing.ErrCardWrongPINLimit, LimitCardWrongPIN)
	}
	if c.ops >= m.cfg.CardOpsPerDay {
		return refuse(routing.ErrCardDailyLimit, LimitCardDaily)
	}
	switch {
	case !term:
		return refuse(routing.ErrTerminalLimit, LimitTerminal)
	case !acq:
		return refuse(routing.ErrAcquirerLimit, LimitAcquirer)
	}
	c.ops++
	return routing.Decision{Allowed: true}
}

// Record feeds a result into the limits, as Limiter.Record does: 55 adds a
// wrong-PIN mark, 00 for an unblock or a reset clears the marks, other codes
// do nothing. The only error is ErrNoCardToken.
func (m *Memory) Record(ctx context.Context, req *routing.Request, code string) error {
	fed := feeds(req, code)
	if fed == feedsNothing {
		return nil
	}
	if req.CardToken == "" {
		m.recordError(ctx)
		return ErrNoCardToken
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.card(req.CardToken, now)
	if fed == feedsMark {
		c.marks = append(c.marks, now)
	} else {
		c.marks = nil
	}
	return nil
}

// card returns the state of token at now, creating it, with its day rolled
// over and its marks older than the window dropped. Called with mu held.
func (m *Memory) card(token string, now time.Time) *cardState {
	c, ok := m.cards[token]
	if !ok {
		c = &cardState{}
		m.cards[token] = c
	}
	if day := now.In(m.zone).Format("20060102"); c.day != day {
		c.day, c.ops = day, 0
	}
	c.marks = dropBefore(c.marks, now.Add(-wrongPINWindow))
	return c
}

// dropBefore drops the marks at or before cut: the window is (cut, now], as
// the Redis script's ZREMRANGEBYSCORE -inf cut.
func dropBefore(marks []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(marks) && !marks[i].After(cut) {
		i++
	}
	if i == len(marks) {
		return nil
	}
	return marks[i:]
}

// gcra is one GCRA decision on key at now, as gcraScript: conforming when
// TAT - now <= (burst - 1) * interval; a conforming request moves TAT to
// max(TAT, now) + interval. Called with mu held.
func (m *Memory) gcra(key throughputKey, now time.Time, iv int64, burst int) bool {
	t := now.UnixMicro()
	tat := max(m.tats[key], t)
	if t < tat-int64(burst-1)*iv {
		return false
	}
	m.tats[key] = tat + iv
	return true
}

// sweep drops what limits nothing any more: throughput keys whose TAT has
// passed (a whole burst again, like a missing key) and cards with no count
// today and no mark in the window. Called with mu held.
func (m *Memory) sweep(now time.Time) {
	t := now.UnixMicro()
	for k, tat := range m.tats {
		if tat <= t {
			delete(m.tats, k)
		}
	}
	day := now.In(m.zone).Format("20060102")
	cut := now.Add(-wrongPINWindow)
	for k, c := range m.cards {
		if c.marks = dropBefore(c.marks, cut); len(c.marks) == 0 && (c.day != day || c.ops == 0) {
			delete(m.cards, k)
		}
	}
}

// throughputKey names a terminal of an acquirer, or (terminal empty) the
// acquirer as a whole.
type throughputKey struct{ acquirer, terminal string }
