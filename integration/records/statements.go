package records

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StatementRun is what one WriteStatements call did.
type StatementRun struct {
	Period  string // YYYY-MM
	Written int    // statements written now
	Skipped int    // cards whose statement was recorded as sent before
}

// ParseMonth parses "YYYY-MM" and returns its first day (UTC).
func ParseMonth(s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("month must be YYYY-MM")
	}
	return t.UTC(), nil
}

// ErrMonthOpen: the month asked for has not ended. A statement is recorded
// as sent once and never written again, so one written while the consumer
// still stores operations of its month would leave the later ones out of
// every statement.
var ErrMonthOpen = errors.New("month has not ended")

// WriteStatements writes the statement of every card with an operation
// completed in month (YYYY-MM) into dir/<month>/<card token>.json and .html,
// and records each in statements_sent in the same transaction as its files
// are written. A card recorded before is skipped, so a re-run sends nothing
// twice. A crash after the files were written but before the commit writes
// the same files again on the next run (their content depends only on the
// stored history). A month that has not ended (in UTC) is refused with
// ErrMonthOpen before anything is written.
func WriteStatements(ctx context.Context, s *Store, month, dir string, m *Metrics) (StatementRun, error) {
	run := StatementRun{Period: month}
	from, err := ParseMonth(month)
	if err != nil {
		return run, err
	}
	to := from.AddDate(0, 1, 0)
	if time.Now().Before(to) {
		return run, fmt.Errorf("statements %s: %w (it ends %s UTC)", month, ErrMonthOpen, to.Format(time.DateOnly))
	}
	cards, err := s.CardsWithActivity(ctx, from, to)
	if err != nil {
		return run, err
	}
	out := filepath.Join(dir, month)
	if err := os.MkdirAll(out, 0o750); err != nil {
		return run, err
	}
	for _, card := range cards {
		st, err := s.Statement(ctx, card, from, to.AddDate(0, 0, -1))
		if err != nil {
			return run, err
		}
		base := filepath.Join(out, card)
		sent, err := s.SendStatement(ctx, card, month, base+".json", len(st.Operations), func() error {
			b, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				return err
			}
			if err := writeFileAtomic(base+".json", append(b, '\n')); err != nil {
				return err
			}
			var h bytes.Buffer
			if err := RenderStatementHTML(&h, st); err != nil {
				return err
			}
			return writeFileAtomic(base+".html", h.Bytes())
		})
		if err != nil {
			return run, fmt.Errorf("statement of card %s: %w", card, err)
		}
		if sent {
			run.Written++
			if m != nil {
				m.statements.Inc()
			}
		} else {
			run.Skipped++
		}
	}
	return run, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
