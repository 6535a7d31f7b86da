package redislimit

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/routing"
)

// The shared duplicate window (routing.SharedWindow): one Redis hash per
// request, in the card's hash slot, so that its check and the card limits are
// one script on Redis Cluster too (see docs/rate-limits.md, "The duplicate
// window").
//
//	<prefix>:{c:<card token>}:w:<acquirer>:<terminal>:<stan>:<transmit>
//
//	s    f = in flight (claimed, no outcome yet), d = done, x = reversed by
//	     its acquirer before it came (Forbid), no request yet
//	dl   in-flight deadline, Redis server time in ms
//	c o r i e   outcome: code, outcome class, reason, issuer, event id
//	rev  routing.WindowEntry.Reversal, when given
//	rvd  "1" once a reversal is claimed (ClaimReversal)

var _ routing.SharedWindow = (*Limiter)(nil)

const (
	// pollInterval is how often a duplicate reads the record of a first
	// request in flight on another instance.
	pollInterval = 20 * time.Millisecond
	// inFlightGrace is how long after the first request's deadline a
	// duplicate still waits for its outcome: the first instance records and
	// stores its outcome after the issuer's answer, which may come at the
	// deadline.
	inFlightGrace = 2 * time.Second
	// answerMargin is kept of a duplicate's own deadline to answer it (94)
	// and record that answer, instead of waiting until the deadline.
	answerMargin = 100 * time.Millisecond
	// defaultRemaining is the in-flight time claimed for a request whose
	// context has no deadline (the flow always sets one).
	defaultRemaining = 30 * time.Second
)

func (l *Limiter) windowKey(id routing.WindowID) string {
	e := l.esc.Replace
	return l.cfg.KeyPrefix + ":{c:" + e(id.CardToken) + "}:w:" + e(id.Acquirer) + ":" + e(id.Terminal) + ":" + e(id.STAN) + ":" + e(id.Transmit)
}

// remaining is ctx's time left in ms, at least 1.
func remaining(ctx context.Context) int64 {
	left := defaultRemaining
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	return max(left.Milliseconds(), 1)
}

// Claim implements routing.SharedWindow: the window's check and claim and
// every limit of req in one round trip (one script on a single Redis; on
// Redis Cluster the card's script, which holds the window, and the
// throughput scripts in one pipeline). A duplicate whose first request is in
// flight waits for it, reading the record every 20 ms, until the first
// finishes, 100 ms before ctx's deadline, or 2 s after the first's own
// deadline, whichever comes first; then the error wraps
// routing.ErrDuplicateInFlight. Errors of Redis wrap ErrUnavailable, and the
// Decision is then the fail-closed refusal (as Allow's).
func (l *Limiter) Claim(ctx context.Context, req *routing.Request, window time.Duration) (routing.Claim, error) {
	d, seen, err := l.decide(ctx, req, window)
	if err != nil || seen == nil {
		return routing.Claim{First: err == nil, Decision: d}, err
	}
	l.stats.duplicates.Add(1)
	rec := parseRecord(seen[1:])
	key := l.windowKey(routing.WindowIDOf(req))
	for {
		if rec.Done {
			return routing.Claim{Previous: rec.Outcome}, nil
		}
		if !rec.exists {
			return routing.Claim{}, fmt.Errorf("%w: its record expired unfinished", routing.ErrDuplicateInFlight)
		}
		left := time.Duration(rec.deadline-rec.now)*time.Millisecond + inFlightGrace
		if left <= 0 {
			return routing.Claim{}, fmt.Errorf("%w: its deadline passed without an outcome", routing.ErrDuplicateInFlight)
		}
		wait := min(pollInterval, left)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl)-answerMargin < wait {
			return routing.Claim{}, fmt.Errorf("%w: no outcome within this request's deadline", routing.ErrDuplicateInFlight)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return routing.Claim{}, fmt.Errorf("%w: %w", routing.ErrDuplicateInFlight, ctx.Err())
		case <-t.C:
		}
		if rec, err = l.read(ctx, key); err != nil {
			return routing.Claim{}, err
		}
	}
}

// Finish implements routing.SharedWindow: it stores entry for window as the
// outcome of the claimed req and feeds entry.LimitCode to the card's
// wrong-PIN marks as Record does — one script, one round trip (on a single
// Redis in the pipeline of the other requests' scripts of the moment). Errors wrap
// ErrUnavailable; the record then stays in flight (see Claim).
func (l *Limiter) Finish(ctx context.Context, req *routing.Request, entry routing.WindowEntry, window time.Duration) error {
	if req.CardToken == "" {
		l.recordError(ctx)
		return ErrNoCardToken
	}
	o := entry.Outcome
	c := &call{script: finishScript,
		keys: []string{l.wrongPINKey(req.CardToken), l.windowKey(routing.WindowIDOf(req))},
		args: []any{int(feeds(req, entry.LimitCode)), wrongPINWindow.Milliseconds(), l.markID(req),
			window.Milliseconds(), o.Code, o.Outcome, o.Reason, o.Issuer, o.EventID, string(entry.Reversal)}}
	var err error
	if l.split {
		err = finishScript.Run(ctx, l.rdb, c.keys, c.args...).Err()
	} else {
		// With the other requests' scripts of the moment (batcher).
		c, _ = l.batch.do(ctx, c, false)
		err = c.cmd.Err()
	}
	if err != nil {
		l.failed(err)
		l.recordError(ctx)
		return fmt.Errorf("finish: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// Lookup returns the window's record of id without waiting; found is false
// when the window holds none (never claimed, or expired). Errors wrap
// ErrUnavailable.
func (l *Limiter) Lookup(ctx context.Context, id routing.WindowID) (routing.WindowRecord, bool, error) {
	rec, err := l.read(ctx, l.windowKey(id))
	if err != nil {
		return routing.WindowRecord{}, false, err
	}
	return rec.WindowRecord, rec.exists, nil
}

// ClaimReversal marks the finished record of id reversed. It reports true to
// exactly one caller across every instance; false when the record was
// claimed already, is still in flight, or is not held. Errors wrap
// ErrUnavailable.
func (l *Limiter) ClaimReversal(ctx context.Context, id routing.WindowID) (bool, error) {
	n, err := claimReversalScript.Run(ctx, l.rdb, []string{l.windowKey(id)}).Int64()
	if err != nil {
		return false, fmt.Errorf("claim reversal: %w: %w", ErrUnavailable, err)
	}
	return n == 1, nil
}

// Forbid implements routing.WindowReversals: id, which the window does not
// hold, is marked reversed for window; its request's Claim is then First with
// the refusal routing.ErrReversedBeforeReceived, on any instance. It reports
// false when the window holds id. On a single Redis with Config.ReplicaAcks
// the mark is acknowledged by that many replicas, as a claim is, or it is an
// error. Errors wrap ErrUnavailable.
func (l *Limiter) Forbid(ctx context.Context, id routing.WindowID, window time.Duration) (bool, error) {
	// The mark's own token: a script the client sends again (its answer
	// was slow) finds its own mark, not another's.
	c := &call{script: forbidScript, keys: []string{l.windowKey(id)}, args: []any{window.Milliseconds(), rand.Text()}}
	var w *redis.Cmd
	if l.split {
		c.cmd = forbidScript.Run(ctx, l.rdb, c.keys, c.args...)
	} else {
		c, w = l.batch.do(ctx, c, l.cfg.ReplicaAcks > 0)
	}
	n, err := c.cmd.Int64()
	if err == nil && n == 1 {
		err = l.replicated(w)
	}
	if err != nil {
		l.failed(err)
		return false, fmt.Errorf("forbid: %w: %w", ErrUnavailable, err)
	}
	return n == 1, nil
}

// ReleaseReversal undoes ClaimReversal after a reversal that failed, so that
// the acquirer's next advice tries again. Errors wrap ErrUnavailable.
func (l *Limiter) ReleaseReversal(ctx context.Context, id routing.WindowID) error {
	if err := l.rdb.HDel(ctx, l.windowKey(id), "rvd").Err(); err != nil {
		return fmt.Errorf("release reversal: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// windowRec is a window record as read, with the server's clock.
type windowRec struct {
	routing.WindowRecord
	exists   bool
	now      int64 // server time, ms
	deadline int64 // in-flight deadline, server ms
}

func (l *Limiter) read(ctx context.Context, key string) (windowRec, error) {
	v, err := readScript.Run(ctx, l.rdb, []string{key}).Slice()
	if err != nil {
		l.failed(err)
		return windowRec{}, fmt.Errorf("read the window: %w: %w", ErrUnavailable, err)
	}
	return parseRecord(v), nil
}

// parseRecord reads {now, s, dl, c, o, r, i, e[, rev, rvd]} (absent fields
// nil).
func parseRecord(v []any) windowRec {
	str := func(i int) string {
		if i < len(v) {
			if s, ok := v[i].(string); ok {
				return s
			}
		}
		return ""
	}
	num := func(i int) int64 {
		if i < len(v) {
			switch n := v[i].(type) {
			case int64:
				return n
			case string:
				x, _ := strconv.ParseInt(n, 10, 64)
				return x
			}
		}
		return 0
	}
	r := windowRec{now: num(0), deadline: num(2), exists: str(1) != ""}
	r.Done = str(1) == "d"
	if r.Done {
		r.Outcome = routing.Outcome{Code: str(3), Outcome: str(4), Reason: str(5), Issuer: str(6), EventID: str(7)}
	}
	if rev := str(8); rev != "" {
		r.Reversal = []byte(rev)
	}
	r.Reversed = str(9) == "1"
	return r
}
