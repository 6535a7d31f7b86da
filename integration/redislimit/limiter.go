package redislimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"pingate/iso8583"
	"pingate/routing"
)

// ErrUnavailable is wrapped by the errors of Allow and Record when Redis could
// not answer: down, timed out, or the request's context expired. It wraps
// routing.ErrLimiterUnavailable.
var ErrUnavailable = fmt.Errorf("redis: %w", routing.ErrLimiterUnavailable)

// ErrNoCardToken is returned for a request without a CardToken: card limits
// cannot be applied, so the request is refused (fail closed).
var ErrNoCardToken = errors.New("request has no card token")

// The limits that refuse (routing.Decision.Limit). A refusal's cause is in
// routing.Decision.Refusal: routing.ErrCardDailyLimit, ErrCardWrongPINLimit,
// ErrTerminalLimit, ErrAcquirerLimit or ErrLimiterUnavailable;
// routing.ResponseFor chooses the response code and reason from it.
const (
	LimitCardDaily    = "card_daily"
	LimitCardWrongPIN = "card_wrong_pin"
	LimitTerminal     = "terminal"
	LimitAcquirer     = "acquirer"
	LimitCard         = "card" // the card limits as a whole, when they cannot be checked
)

// wrongPINWindow is the sliding window of CardWrongPINPerHour.
const wrongPINWindow = time.Hour

// Limiter applies the limits of a Config through Redis. It is safe for
// concurrent use by any number of goroutines and gateway instances.
type Limiter struct {
	cfg     Config
	rdb     redis.UniversalClient
	zone    *time.Location
	termIv  int64 // GCRA emission intervals, µs
	acqIv   int64
	termLoc *localBuckets
	acqLoc  *localBuckets
	now     func() time.Time
	// split sends a request's decisions as one script per hash slot group
	// (Redis Cluster) instead of one script (a single Redis).
	split bool
	// args are the scripts' arguments that are the same for every request,
	// boxed once (an int boxed into an interface per call is an
	// allocation each).
	args struct{ opsPerDay, counterTTL, noLimit, wpLimit, wpWindow, termIv, termBurst, acqIv, acqBurst any }
	// batch sends the scripts of concurrent requests together (single
	// Redis only: unused on Redis Cluster).
	batch *batcher
	*meter
	esc *strings.Replacer
}

var _ routing.Limiter = (*Limiter)(nil)

// New validates cfg, applies its defaults and returns a Limiter. It does not
// contact Redis: a Redis that is down at start-up is handled like one that
// goes down later (see the package documentation). It fails if
// cfg.PasswordEnv names an unset variable.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	zone, err := time.LoadLocation(cfg.DayZone)
	if err != nil {
		return nil, fmt.Errorf("redislimit: day_zone %q: %w", cfg.DayZone, err)
	}
	rdb, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:     cfg,
		rdb:     rdb,
		zone:    zone,
		termIv:  interval(cfg.TerminalRPS),
		acqIv:   interval(cfg.AcquirerRPS),
		termLoc: newLocalBuckets(cfg.TerminalRPS, cfg.TerminalBurst),
		acqLoc:  newLocalBuckets(cfg.AcquirerRPS, cfg.AcquirerBurst),
		now:     time.Now,
		split:   cfg.Mode == ModeCluster,
		meter:   newMeter(),
		esc:     strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D", ":", "%3A"),
	}
	l.args.opsPerDay, l.args.counterTTL = cfg.CardOpsPerDay, int64(48*time.Hour/time.Second)
	l.args.noLimit, l.args.wpLimit, l.args.wpWindow = 0, cfg.CardWrongPINPerHour, wrongPINWindow.Milliseconds()
	l.args.termIv, l.args.termBurst, l.args.acqIv, l.args.acqBurst = l.termIv, cfg.TerminalBurst, l.acqIv, cfg.AcquirerBurst
	l.batch = &batcher{l: l}
	return l, nil
}

// interval is the GCRA emission interval in whole microseconds for rate
// requests per second.
func interval(rate float64) int64 { return int64(math.Ceil(1e6 / rate)) }

// NewClient builds the Redis client of cfg (standalone, Sentinel or Cluster)
// with the settings pingate wants of every Redis caller: the password read
// from cfg.PasswordEnv, deadlines from the caller's context, and fast
// failure while Redis is down. The branch API's shared store uses it too.
func NewClient(cfg Config) (redis.UniversalClient, error) {
	cfg = cfg.WithDefaults()
	var password string
	if cfg.PasswordEnv != "" {
		var ok bool
		if password, ok = os.LookupEnv(cfg.PasswordEnv); !ok {
			return nil, fmt.Errorf("redislimit: password_env %s is not set", cfg.PasswordEnv)
		}
	}
	opts := &redis.UniversalOptions{
		Addrs:                 cfg.Addrs,
		MasterName:            cfg.MasterName,
		Username:              cfg.Username,
		Password:              password,
		DB:                    cfg.DB,
		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.ReadTimeout,
		ContextTimeoutEnabled: true,
		// One retry replaces a pooled connection that broke while idle (a
		// Redis restart) without the caller seeing an error; more would only
		// add back-off delay while Redis is really down.
		MaxRetries: 1,
		// One dial attempt per command: the default five, 100ms apart,
		// would hold every request half a second while Redis is down,
		// when the point is to answer at once (fail closed or locally).
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
		// CLIENT SETINFO needs Redis 7.2; older servers answer an error.
		DisableIdentity: true,
	}
	switch cfg.Mode {
	case ModeCluster:
		co := opts.Cluster()
		// After a failover the client learns the new slot map on a MOVED
		// answer, which a dead master never gives: re-read it every few
		// seconds (go-redis's default is a minute), and at once when a
		// command fails (Limiter.failed).
		co.ClusterStateReloadInterval = clusterStateReload
		return redis.NewClusterClient(co), nil
	case ModeSentinel:
		return redis.NewFailoverClient(opts.Failover()), nil
	}
	return redis.NewClient(opts.Simple()), nil
}

// clusterStateReload is how often a Cluster client re-reads the slot map
// even when nothing failed.
const clusterStateReload = 5 * time.Second

// failed notes err, a command's failure: on Redis Cluster a node that stops
// answering may have been replaced by its replica, so the slot map is read
// again (in the background, at most every 200 ms whatever the rate of
// failures). A script error or the caller's expired context says nothing of
// the cluster and is ignored.
func (l *Limiter) failed(err error) {
	cc, ok := l.rdb.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !strings.HasPrefix(rerr.Error(), "CLUSTERDOWN") && !strings.HasPrefix(rerr.Error(), "TRYAGAIN") {
		return // the server answered: the node is alive
	}
	cc.ReloadState(context.Background())
}

// Close closes the Redis connections. Allow and Record fail afterwards.
func (l *Limiter) Close() error {
	err := l.rdb.Close()
	if l.batch != nil {
		l.batch.close()
	}
	return err
}

// Config returns the configuration in effect, defaults applied.
func (l *Limiter) Config() Config { return l.cfg }

// Keys of one request. Identifiers are escaped so that none can close a hash
// tag or fake a separator.
func (l *Limiter) opsKey(token string, day time.Time) string {
	var d [8]byte // the concatenation copies it: no string is made for the date
	return l.cfg.KeyPrefix + ":{c:" + l.esc.Replace(token) + "}:ops:" + string(day.In(l.zone).AppendFormat(d[:0], "20060102"))
}

func (l *Limiter) wrongPINKey(token string) string {
	return l.cfg.KeyPrefix + ":{c:" + l.esc.Replace(token) + "}:wp"
}

func (l *Limiter) terminalKey(acq, term string) string {
	return l.cfg.KeyPrefix + ":{t:" + l.esc.Replace(acq) + ":" + l.esc.Replace(term) + "}"
}

func (l *Limiter) acquirerKey(acq string) string {
	return l.cfg.KeyPrefix + ":{a:" + l.esc.Replace(acq) + "}"
}

// call is one script invocation of a pipeline.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// pipeliner is a client that pipelines and runs scripts: the limiter's, or
// on Redis Cluster one node's.
type pipeliner interface {
	Pipeline() redis.Pipeliner
	redis.Scripter
}

// run sends calls as one pipeline of EVALSHA; calls the server does not have
// the script for are re-sent with EVAL in one more pipeline. Each call's
// result or error is in its cmd. With wait, a WAIT for Config.ReplicaAcks
// replicas closes the pipeline (the same round trip) and its answer is
// returned; nil without wait.
func (l *Limiter) run(ctx context.Context, rdb pipeliner, calls []*call, wait bool) *redis.Cmd {
	send := func(calls []*call, full bool) *redis.Cmd {
		if len(calls) == 1 && !wait {
			// One command: sent as it is, without a pipeline's
			// bookkeeping (the same round trip).
			c := calls[0]
			if full {
				c.cmd = c.script.Eval(ctx, rdb, c.keys, c.args...)
			} else {
				c.cmd = c.script.EvalSha(ctx, rdb, c.keys, c.args...)
			}
			return nil
		}
		pipe := rdb.Pipeline()
		for _, c := range calls {
			if full {
				c.cmd = c.script.Eval(ctx, pipe, c.keys, c.args...)
			} else {
				c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
			}
		}
		var w *redis.Cmd
		if wait {
			w = pipe.Do(ctx, "WAIT", l.cfg.ReplicaAcks, l.cfg.ReplicaAckTimeout.Milliseconds())
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		return w
	}
	w := send(calls, false)
	var again []*call
	for _, c := range calls {
		l.failed(c.cmd.Err())
		// HasErrorPrefix allocates even for a nil error: most calls have one.
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		w = send(again, true)
	}
	return w
}

// unclaim undoes the writes of c, a card or request script whose writes did
// not reach enough replicas, so that the refused request neither holds its
// window record in flight nor spends the card's count. Best effort.
func (l *Limiter) unclaim(ctx context.Context, c *call, counted bool) {
	flag := "0"
	if counted {
		flag = "1"
	}
	_ = unclaimScript.Run(ctx, l.rdb, c.keys[:2], c.args[6], flag).Err()
}

// replicated checks a WAIT's answer (nil: none asked): an error when fewer
// replicas than Config.ReplicaAcks acknowledged the writes before it.
func (l *Limiter) replicated(w *redis.Cmd) error {
	if w == nil {
		return nil
	}
	n, err := w.Int64()
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	if n < int64(l.cfg.ReplicaAcks) {
		return fmt.Errorf("%d of %d replicas acknowledged within %v", n, l.cfg.ReplicaAcks, l.cfg.ReplicaAckTimeout)
	}
	return nil
}

// Allow decides whether req may proceed, in one Redis round trip: one script
// on a single Redis (standalone, Sentinel), one script per hash slot group in
// one pipeline on Redis Cluster (see the package documentation). A refusal is
// a Decision with Allowed false and nil error. When Redis cannot answer,
// throughput limits are decided locally and card limits refuse
// (routing.ErrLimiterUnavailable, answered 91): the Decision is then that
// refusal and the error wraps ErrUnavailable. A request without CardToken is
// refused the same way with ErrNoCardToken. An empty Terminal or Acquirer
// skips that limit. Allow uses the card token only, never the PAN.
func (l *Limiter) Allow(ctx context.Context, req *routing.Request) (routing.Decision, error) {
	d, _, err := l.decide(ctx, req, 0)
	return d, err
}

// decide is Allow, and with window > 0 also the duplicate window's check and
// claim in the same round trip: seen is then the window's record when req is
// a duplicate (the limits untouched), nil when req was claimed.
func (l *Limiter) decide(ctx context.Context, req *routing.Request, window time.Duration) (d routing.Decision, seen []any, err error) {
	if req.CardToken == "" {
		d, err := l.noCardToken(ctx)
		return d, nil, err
	}
	now := l.now()
	opsKey, wpKey := l.opsKey(req.CardToken, now), l.wrongPINKey(req.CardToken)
	winKey := opsKey // unused without a window, but in the card's slot
	var winMS, leftMS int64
	if window > 0 {
		winKey, winMS, leftMS = l.windowKey(routing.WindowIDOf(req)), window.Milliseconds(), remaining(ctx)
	}
	// Room for requestScript's four more: one slice, built once.
	cardArgs := make([]any, 7, 11)
	cardArgs[0], cardArgs[1], cardArgs[2], cardArgs[3] = winMS, leftMS, l.args.opsPerDay, l.args.counterTTL
	cardArgs[4], cardArgs[5], cardArgs[6] = l.args.noLimit, l.args.wpWindow, l.markID(req)
	if req.Operation == routing.OpChange {
		cardArgs[4] = l.args.wpLimit // the only operation that verifies a PIN
	}
	term := req.Acquirer != "" && req.Terminal != ""
	acq := req.Acquirer != ""
	if !l.split {
		return l.decideOne(ctx, req, now, []string{winKey, opsKey, wpKey, l.terminalKey(req.Acquirer, req.Terminal), l.acquirerKey(req.Acquirer)}, cardArgs, term, acq)
	}
	return l.decideSplit(ctx, req, now, []string{winKey, opsKey, wpKey}, cardArgs, term, acq)
}

// decideOne is decide on a single Redis: requestScript, one EVALSHA, in the
// pipeline of the requests deciding at the same time (batcher).
func (l *Limiter) decideOne(ctx context.Context, req *routing.Request, now time.Time, keys []string, cardArgs []any, term, acq bool) (routing.Decision, []any, error) {
	termIv, acqIv := l.args.noLimit, l.args.noLimit
	if term {
		termIv = l.args.termIv
	}
	if acq {
		acqIv = l.args.acqIv
	}
	c := &call{script: requestScript, keys: keys,
		args: append(cardArgs, termIv, l.args.termBurst, acqIv, l.args.acqBurst)}
	c, w := l.batch.do(ctx, c, l.cfg.ReplicaAcks > 0)
	res, err := result(c.cmd)
	if err == nil && res[0] != verdictDuplicate {
		// A duplicate wrote nothing: no replica has anything to take.
		if err = l.replicated(w); err != nil && res[0] != verdictReversedFirst {
			// (A forbidden request's claim stays: never sent either way.)
			l.unclaim(ctx, c, res[0] == verdictAllowed)
		}
	}
	if err != nil {
		d := refuse(routing.ErrLimiterUnavailable, LimitCard)
		l.count(ctx, d)
		// Throughput decided locally, to keep the local buckets honest.
		if term {
			l.fallback(ctx, LimitTerminal)
			l.termLoc.allow(req.Acquirer+"\x00"+req.Terminal, now)
		}
		if acq {
			l.fallback(ctx, LimitAcquirer)
			l.acqLoc.allow(req.Acquirer, now)
		}
		return d, nil, fmt.Errorf("limits: %w: %w", ErrUnavailable, err)
	}
	var d routing.Decision
	switch res[0] {
	case verdictDuplicate:
		return routing.Decision{}, c.cmd.Val().([]any), nil
	case verdictAllowed:
		d = routing.Decision{Allowed: true}
	case verdictDaily:
		d = refuse(routing.ErrCardDailyLimit, LimitCardDaily)
	case verdictWrongPIN:
		d = refuse(routing.ErrCardWrongPINLimit, LimitCardWrongPIN)
	case verdictTerminal:
		d = refuse(routing.ErrTerminalLimit, LimitTerminal)
	case verdictAcquirer:
		d = refuse(routing.ErrAcquirerLimit, LimitAcquirer)
	case verdictReversedFirst:
		return reversedFirst, nil, nil // not a limit's: not counted
	default:
		d = refuse(routing.ErrLimiterUnavailable, LimitCard)
		l.count(ctx, d)
		return d, nil, fmt.Errorf("limits: %w: verdict %d", ErrUnavailable, res[0])
	}
	l.count(ctx, d)
	return d, nil, nil
}

// result reads a decision script's reply: its leading integers (the verdict
// and its count; a duplicate's record follows as strings).
func result(cmd *redis.Cmd) ([]int64, error) {
	if err := cmd.Err(); err != nil {
		return nil, err
	}
	vals, ok := cmd.Val().([]any)
	if !ok || len(vals) < 2 {
		return nil, fmt.Errorf("script returned %T %v", cmd.Val(), cmd.Val())
	}
	out := make([]int64, 0, 2)
	for _, v := range vals[:2] {
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("script returned %T", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// decideSplit is decide on Redis Cluster, where the card's keys, the
// terminal's and the acquirer's live in different slots: cardScript and one
// gcraScript per throughput limit, as one pipeline.
func (l *Limiter) decideSplit(ctx context.Context, req *routing.Request, now time.Time, keys []string, cardArgs []any, term, acq bool) (routing.Decision, []any, error) {
	card := &call{script: cardScript, keys: keys, args: cardArgs}
	calls := []*call{card}
	var tc, ac *call
	if term {
		tc = &call{script: gcraScript, keys: []string{l.terminalKey(req.Acquirer, req.Terminal)},
			args: []any{l.termIv, l.cfg.TerminalBurst}}
		calls = append(calls, tc)
	}
	if acq {
		ac = &call{script: gcraScript, keys: []string{l.acquirerKey(req.Acquirer)},
			args: []any{l.acqIv, l.cfg.AcquirerBurst}}
		calls = append(calls, ac)
	}
	var w *redis.Cmd
	if cc, ok := l.rdb.(*redis.ClusterClient); ok && l.cfg.ReplicaAcks > 0 {
		// WAIT counts the replicas of the node it is sent to: the card's
		// script goes to the card's master with its WAIT, the throughput
		// scripts (not waited for) alongside, in parallel.
		node, err := cc.MasterForKey(ctx, keys[1])
		if err != nil {
			l.failed(err)
			d := refuse(routing.ErrLimiterUnavailable, LimitCard)
			l.count(ctx, d)
			card.cmd = redis.NewCmd(ctx)
			card.cmd.SetErr(err)
			for _, c := range calls[1:] {
				c.cmd = redis.NewCmd(ctx)
				c.cmd.SetErr(err)
			}
			l.throughputOnly(ctx, tc, ac, req, now)
			return d, nil, fmt.Errorf("card limits: %w: %w", ErrUnavailable, err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if len(calls) > 1 {
				l.run(ctx, l.rdb, calls[1:], false)
			}
		}()
		w = l.run(ctx, node, calls[:1], true)
		<-done
	} else {
		l.run(ctx, l.rdb, calls, false)
	}

	// Card first: its refusals are the more specific answers.
	cardRes, cardErr := result(card.cmd)
	if cardErr == nil && cardRes[0] != verdictDuplicate {
		if cardErr = l.replicated(w); cardErr != nil && cardRes[0] != verdictReversedFirst {
			l.unclaim(ctx, card, cardRes[0] == verdictAllowed)
		}
	}
	if cardErr != nil {
		d := refuse(routing.ErrLimiterUnavailable, LimitCard)
		l.count(ctx, d)
		l.throughputOnly(ctx, tc, ac, req, now) // keep the local buckets honest
		return d, nil, fmt.Errorf("card limits: %w: %w", ErrUnavailable, cardErr)
	}
	switch cardRes[0] {
	case verdictDuplicate:
		// The throughput scripts of the pipeline have charged the
		// retransmission: it did arrive.
		return routing.Decision{}, card.cmd.Val().([]any), nil
	case verdictReversedFirst:
		return reversedFirst, nil, nil // charged like a duplicate, not counted
	case verdictDaily:
		d := refuse(routing.ErrCardDailyLimit, LimitCardDaily)
		l.count(ctx, d)
		return d, nil, nil
	case verdictWrongPIN:
		d := refuse(routing.ErrCardWrongPINLimit, LimitCardWrongPIN)
		l.count(ctx, d)
		return d, nil, nil
	}

	d := routing.Decision{Allowed: true}
	if !l.throughput(ctx, tc, LimitTerminal, l.termLoc, req.Acquirer+"\x00"+req.Terminal, now) {
		d = refuse(routing.ErrTerminalLimit, LimitTerminal)
	} else if !l.throughput(ctx, ac, LimitAcquirer, l.acqLoc, req.Acquirer, now) {
		d = refuse(routing.ErrAcquirerLimit, LimitAcquirer)
	}
	if !d.Allowed {
		// The card's operation was counted but will not happen: give it
		// back. Best effort, and a second round trip only on this refusal.
		_ = refundScript.Run(ctx, l.rdb, card.keys[1:2]).Err()
	}
	l.count(ctx, d)
	return d, nil, nil
}

// throughput reads a GCRA result, or decides with the local bucket when the
// script failed. A nil call (limit skipped) allows.
func (l *Limiter) throughput(ctx context.Context, c *call, limit string, loc *localBuckets, localKey string, now time.Time) bool {
	if c == nil {
		return true
	}
	res, err := result(c.cmd)
	if err == nil {
		return res[0] == verdictAllowed
	}
	l.fallback(ctx, limit)
	return loc.allow(localKey, now)
}

// throughputOnly charges the local buckets of failed throughput calls when
// the request is refused anyway, so a local limit still sees the traffic.
func (l *Limiter) throughputOnly(ctx context.Context, term, acq *call, req *routing.Request, now time.Time) {
	if term != nil && term.cmd.Err() != nil {
		l.fallback(ctx, LimitTerminal)
		l.termLoc.allow(req.Acquirer+"\x00"+req.Terminal, now)
	}
	if acq != nil && acq.cmd.Err() != nil {
		l.fallback(ctx, LimitAcquirer)
		l.acqLoc.allow(req.Acquirer, now)
	}
}

// Record feeds a result into the limits, for a request outside the duplicate
// window (Finish does it for the others). Code 55 (incorrect PIN) adds a
// wrong-PIN mark for the card — one Redis round trip. Code 00 for an unblock
// or a reset clears the card's marks — one round trip. Other codes do
// nothing and return nil. Errors wrap ErrUnavailable (or are ErrNoCardToken);
// a lost mark is not retried here.
func (l *Limiter) Record(ctx context.Context, req *routing.Request, code string) error {
	fed := feeds(req, code)
	if fed == feedsNothing {
		return nil
	}
	if req.CardToken == "" {
		l.recordError(ctx)
		return ErrNoCardToken
	}
	err := finishScript.Run(ctx, l.rdb, []string{l.wrongPINKey(req.CardToken)}, int(fed), wrongPINWindow.Milliseconds(), l.markID(req)).Err()
	if err != nil {
		l.failed(err)
		l.recordError(ctx)
		return fmt.Errorf("record code %s: %w: %w", code, ErrUnavailable, err)
	}
	return nil
}

// markID names req's wrong-PIN mark: its operation id.
func (l *Limiter) markID(req *routing.Request) string {
	if req.ID != "" {
		return req.ID
	}
	return fmt.Sprintf("t%d", l.now().UnixNano())
}

// feed is what a result does to a card's wrong-PIN marks.
type feed int

const (
	feedsNothing feed = iota
	feedsMark         // an incorrect PIN (55) adds a mark
	feedsClear        // an approved unblock or reset clears the marks
)

// feeds is what Record does with code for req, for both limiters.
func feeds(req *routing.Request, code string) feed {
	switch {
	case code == iso8583.RCIncorrectPIN:
		return feedsMark
	case code == iso8583.RCApproved && (req.Operation == routing.OpUnblock || req.Operation == routing.OpReset):
		return feedsClear
	}
	return feedsNothing
}

// reversedFirst is the decision on a request whose acquirer reversed it
// before it came (verdictReversedFirst): refused, by no limit.
var reversedFirst = routing.Decision{Refusal: routing.ErrReversedBeforeReceived}

func refuse(refusal error, limit string) routing.Decision {
	return routing.Decision{Allowed: false, Refusal: refusal, Limit: limit}
}

// reasonOf is the reason routing answers a refusal with, for the metrics.
func reasonOf(d routing.Decision) string {
	if d.Allowed {
		return ""
	}
	return routing.ResponseFor(&routing.LimitError{Limit: d.Limit, Err: d.Refusal}).Reason
}

// Stats are counts since New, for tests and status pages. The same counts
// are exported as OTel metrics.
type Stats struct {
	Allowed      int64 // decisions that allowed
	Refused      int64 // decisions that refused, fail-closed ones included
	FailedClosed int64 // refusals because Redis could not check the card limits
	Fallbacks    int64 // throughput decisions taken locally because Redis failed
	RecordErrors int64 // Record and Finish calls that could not store their result
	Duplicates   int64 // Claims that found the request in the shared window
}

type counters struct {
	allowed, refused, failedClosed, fallbacks, recordErrors, duplicates atomic.Int64
}

// meter keeps the counters and OTel instruments of a limiter (Limiter and
// Memory alike).
type meter struct {
	stats   counters
	metrics instruments
}

func newMeter() *meter { return &meter{metrics: newInstruments(otel.Meter("pingate/redislimit"))} }

// Stats returns the counters.
func (m *meter) Stats() Stats {
	return Stats{
		Allowed:      m.stats.allowed.Load(),
		Refused:      m.stats.refused.Load(),
		FailedClosed: m.stats.failedClosed.Load(),
		Fallbacks:    m.stats.fallbacks.Load(),
		RecordErrors: m.stats.recordErrors.Load(),
		Duplicates:   m.stats.duplicates.Load(),
	}
}

// noCardToken refuses a request without a card token (fail closed).
func (m *meter) noCardToken(ctx context.Context) (routing.Decision, error) {
	d := refuse(routing.ErrLimiterUnavailable, LimitCard)
	m.count(ctx, d)
	return d, ErrNoCardToken
}

// instruments are the OTel counters:
//
//	pingate.limiter.decisions      {result=allowed|refused, reason}
//	pingate.limiter.fallbacks      {limit=terminal|acquirer}
//	pingate.limiter.record_errors
//
// A limiter_unavailable refusal is a decision with that reason.
type instruments struct {
	decisions, fallbacks, recordErrors metric.Int64Counter
	// byReason are the counters' options by reason, each a slice made
	// once: a variadic option would make one per decision.
	byReason map[string][]metric.AddOption
}

func newInstruments(m metric.Meter) instruments {
	var in instruments
	// Errors here only come from invalid instrument names; a no-op counter
	// is returned with them, so they need no handling.
	in.decisions, _ = m.Int64Counter("pingate.limiter.decisions",
		metric.WithDescription("rate-limit decisions by result and reason"))
	in.fallbacks, _ = m.Int64Counter("pingate.limiter.fallbacks",
		metric.WithDescription("throughput decisions taken by the local fallback because Redis failed"))
	in.recordErrors, _ = m.Int64Counter("pingate.limiter.record_errors",
		metric.WithDescription("wrong-PIN marks or clears that could not be stored"))
	in.byReason = map[string][]metric.AddOption{
		"": {metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "allowed")))},
	}
	for _, e := range []error{routing.ErrCardDailyLimit, routing.ErrCardWrongPINLimit, routing.ErrTerminalLimit,
		routing.ErrAcquirerLimit, routing.ErrLimiterUnavailable} {
		r := reasonOf(refuse(e, ""))
		in.byReason[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String("result", "refused"), attribute.String("reason", r)))}
	}
	for _, lim := range []string{LimitTerminal, LimitAcquirer} {
		in.byReason["fallback:"+lim] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("limit", lim)))}
	}
	return in
}

func (m *meter) count(ctx context.Context, d routing.Decision) {
	if d.Allowed {
		m.stats.allowed.Add(1)
	} else {
		m.stats.refused.Add(1)
		if errors.Is(d.Refusal, routing.ErrLimiterUnavailable) {
			m.stats.failedClosed.Add(1)
		}
	}
	m.metrics.decisions.Add(ctx, 1, m.metrics.byReason[reasonOf(d)]...)
}

func (m *meter) fallback(ctx context.Context, limit string) {
	m.stats.fallbacks.Add(1)
	m.metrics.fallbacks.Add(ctx, 1, m.metrics.byReason["fallback:"+limit]...)
}

func (m *meter) recordError(ctx context.Context) {
	m.stats.recordErrors.Add(1)
	m.metrics.recordErrors.Add(ctx, 1)
}
