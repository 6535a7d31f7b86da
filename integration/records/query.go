package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Operation is one PIN operation of a card's history, as the inquiry API
// returns it.
type Operation struct {
	EventID      string     `json:"event_id"`
	Seq          int64      `json:"-"`
	Type         string     `json:"type"`
	Operation    string     `json:"operation"`
	Outcome      string     `json:"outcome"`
	ResponseCode string     `json:"response_code"`
	Reason       string     `json:"reason,omitempty"`
	Channel      string     `json:"channel"`
	Acquirer     string     `json:"acquirer"`
	Terminal     string     `json:"terminal"`
	Issuer       string     `json:"issuer,omitempty"`
	Teller       string     `json:"teller,omitempty"`
	Supervisor   string     `json:"supervisor,omitempty"`
	Received     time.Time  `json:"received"`
	Completed    time.Time  `json:"completed"`
	Reverses     string     `json:"reverses,omitempty"`
	ReversedBy   string     `json:"reversed_by,omitempty"`
	ReversedAt   *time.Time `json:"reversed_at,omitempty"`
	// Stands is true for an approved operation no reversal undid.
	Stands    bool   `json:"stands"`
	CardToken string `json:"card_token"`
}

const opColumns = `seq, ce_id, card_token, ce_type, operation, outcome, response_code, reason, channel, acquirer,
	terminal, issuer, teller, supervisor, received, completed, coalesce(reverses, ''), coalesce(reversed_by, ''), reversed_at`

func scanOp(row pgx.Row) (Operation, error) {
	var o Operation
	err := row.Scan(&o.Seq, &o.EventID, &o.CardToken, &o.Type, &o.Operation, &o.Outcome, &o.ResponseCode, &o.Reason,
		&o.Channel, &o.Acquirer, &o.Terminal, &o.Issuer, &o.Teller, &o.Supervisor, &o.Received, &o.Completed,
		&o.Reverses, &o.ReversedBy, &o.ReversedAt)
	o.Received, o.Completed = o.Received.UTC(), o.Completed.UTC()
	if o.ReversedAt != nil {
		t := o.ReversedAt.UTC()
		o.ReversedAt = &t
	}
	o.Stands = o.Outcome == "approved" && o.ReversedBy == ""
	return o, err
}

func collectOps(rows pgx.Rows) ([]Operation, error) {
	defer rows.Close()
	ops := []Operation{}
	for rows.Next() {
		o, err := scanOp(rows)
		if err != nil {
			return nil, err
		}
		ops = append(ops, o)
	}
	return ops, rows.Err()
}

// History returns up to limit operations of card after the cursor (a seq
// from a previous page; 0 for the first page), oldest first, and the cursor
// of the next page (0 when there is none).
func (s *Store) History(ctx context.Context, card string, after int64, limit int) ([]Operation, int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+opColumns+` FROM card_history
		WHERE card_token = $1 AND seq > $2 ORDER BY seq LIMIT $3`, card, after, limit+1)
	if err != nil {
		return nil, 0, err
	}
	ops, err := collectOps(rows)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(ops) > limit {
		ops = ops[:limit]
		next = ops[limit-1].Seq
	}
	return ops, next, nil
}

// Operation returns the operation of event id (ErrNotFound when none).
func (s *Store) Operation(ctx context.Context, id string) (Operation, error) {
	o, err := scanOp(s.pool.QueryRow(ctx, `SELECT `+opColumns+` FROM card_history WHERE ce_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNotFound
	}
	return o, err
}

// Statement is a card's operations completed in [From, To).
type Statement struct {
	CardToken  string         `json:"card_token"`
	From       string         `json:"from"` // first day, YYYY-MM-DD (UTC)
	To         string         `json:"to"`   // last day, inclusive
	Operations []Operation    `json:"operations"`
	Totals     map[string]int `json:"totals"` // by outcome, plus "reversed_after_approval"
}

// Statement returns card's statement for the days from..to inclusive (UTC
// dates). The content depends only on the stored history, so a replay of the
// topic leaves it unchanged.
func (s *Store) Statement(ctx context.Context, card string, from, to time.Time) (Statement, error) {
	st := Statement{CardToken: card, From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		Totals: map[string]int{}}
	rows, err := s.pool.Query(ctx, `SELECT `+opColumns+` FROM card_history
		WHERE card_token = $1 AND completed >= $2 AND completed < $3 ORDER BY completed, ce_id`,
		card, from, to.AddDate(0, 0, 1))
	if err != nil {
		return st, err
	}
	if st.Operations, err = collectOps(rows); err != nil {
		return st, err
	}
	for _, o := range st.Operations {
		st.Totals[o.Outcome]++
		if o.Outcome == "approved" && !o.Stands {
			st.Totals["reversed_after_approval"]++
		}
	}
	return st, nil
}

// CardsWithActivity returns the cards with an operation completed in
// [from, to), ordered by token.
func (s *Store) CardsWithActivity(ctx context.Context, from, to time.Time) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT card_token FROM card_history
		WHERE completed >= $1 AND completed < $2 ORDER BY card_token`, from, to)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// StatementSent reports whether card's statement for period was recorded as
// sent.
func (s *Store) StatementSent(ctx context.Context, card, period string) (bool, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM statements_sent WHERE card_token = $1 AND period = $2`,
		card, period).Scan(&n)
	return n > 0, err
}

// SendStatement records card's statement for period as sent and, inside the
// same transaction, calls write; when write fails nothing is recorded. It
// returns false without calling write when the statement was recorded before.
func (s *Store) SendStatement(ctx context.Context, card, period, file string, ops int, write func() error) (bool, error) {
	sent := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO statements_sent (card_token, period, file, operations)
			VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, card, period, file, ops)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		if err := write(); err != nil {
			return fmt.Errorf("write statement: %w", err)
		}
		sent = true
		return nil
	})
	return sent, err
}

// Counts are totals of the database, for tests and operators.
type Counts struct {
	Events, Unknown, History, Reversed int64
}

// Count returns the totals.
func (s *Store) Count(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM events WHERE NOT known),
		(SELECT count(*) FROM card_history), (SELECT count(*) FROM card_history WHERE reversed_by IS NOT NULL)`).
		Scan(&c.Events, &c.Unknown, &c.History, &c.Reversed)
	return c, err
}

// Dump returns every stored ce_id, the reversed operations (ce_id →
// reversed_by) and the number of history rows: for tests and audits.
func (s *Store) Dump(ctx context.Context) (map[string]bool, map[string]string, int, error) {
	ids := map[string]bool{}
	rows, err := s.pool.Query(ctx, `SELECT ce_id FROM events`)
	if err != nil {
		return nil, nil, 0, err
	}
	list, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, 0, err
	}
	for _, id := range list {
		ids[id] = true
	}
	rev := map[string]string{}
	rows, err = s.pool.Query(ctx, `SELECT ce_id, reversed_by FROM card_history WHERE reversed_by IS NOT NULL`)
	if err != nil {
		return nil, nil, 0, err
	}
	var a, b string
	if _, err := pgx.ForEachRow(rows, []any{&a, &b}, func() error { rev[a] = b; return nil }); err != nil {
		return nil, nil, 0, err
	}
	var n int
	err = s.pool.QueryRow(ctx, `SELECT count(*) FROM card_history`).Scan(&n)
	return ids, rev, n, err
}
