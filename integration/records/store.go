package records

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pingate/integration/events"
	"pingate/iso8583"
	"pingate/routing"
)

// Errors callers branch on.
var (
	// ErrNoPostgres: the service was started without a database. There is
	// no embedded default: a history that vanishes with the process would
	// break the promise this service exists for.
	ErrNoPostgres = errors.New("records needs PostgreSQL: give a postgres:// URL (there is no embedded default)")
	// ErrPasswordInURL: the URL carries a password. Secrets are references:
	// put it in PGPASSWORD or a passfile (PGPASSFILE), which pgx reads.
	ErrPasswordInURL = errors.New("postgres URL must not carry a password: use PGPASSWORD or PGPASSFILE")
	// ErrFenced: the partition's offset in the database is not where this
	// consumer left it: another consumer (a rebalance) or a replay moved it.
	// The batch was not applied; the consumer seeks to the database offset.
	ErrFenced = errors.New("partition offset moved by another consumer")
	// ErrNotFound: no such card history or operation.
	ErrNotFound = errors.New("not found")
)

// FirstOffset is the offset stored for "start at the first offset the broker
// holds" (kafka-go's FirstOffset).
const FirstOffset int64 = -2

var dsnPassword = regexp.MustCompile(`(^|\s)password\s*=`)

// parseURL checks and parses a postgres:// URL. Its errors never repeat the
// URL.
func parseURL(raw string) (*pgxpool.Config, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, ErrNoPostgres
	}
	if u, err := url.Parse(raw); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if _, has := u.User.Password(); has {
			return nil, ErrPasswordInURL
		}
		if q := u.Query(); q.Has("password") {
			return nil, ErrPasswordInURL
		}
	} else if dsnPassword.MatchString(raw) {
		// keyword/value form: host=… user=… password=…
		return nil, ErrPasswordInURL
	}
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, errors.New("postgres URL is not a valid connection string")
	}
	return cfg, nil
}

// Store is the records database. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url (pool of at most maxConns; 0 means
// pgx's default) and checks that it answers and that its schema is current
// (run Migrate first).
func Open(ctx context.Context, url string, maxConns int32) (*Store, error) {
	cfg, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool}
	var v int64
	err = pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: read schema version (run \"pingate records migrate\"): %w", err)
	}
	if v < SchemaVersion() {
		pool.Close()
		return nil, fmt.Errorf("postgres: schema version %d, this binary needs %d: run \"pingate records migrate\"", v, SchemaVersion())
	}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Record is one Kafka record as the consumer read it.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Headers   []events.Header
	Value     []byte
}

// ApplyResult counts what one batch did.
type ApplyResult struct {
	Applied    int // new events stored
	Duplicates int // events whose ce_id was already stored (skipped)
	Unknown    int // new events of an unknown type or malformed, kept verbatim
	Reversals  int // operations marked reversed by this batch
	NoCard     int // new understood events without a card (no history row)
	// UnknownTypes holds the ce_type of each Unknown event ("" when absent).
	UnknownTypes []string
}

// PartitionOffset returns the stored next offset of group's partition,
// creating the row at FirstOffset when there is none.
func (s *Store) PartitionOffset(ctx context.Context, group, topic string, partition int) (int64, error) {
	_, err := s.pool.Exec(ctx, `INSERT INTO consumer_offsets (consumer_group, topic, kafka_partition, next_offset)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, group, topic, partition, FirstOffset)
	if err != nil {
		return 0, fmt.Errorf("offset of partition %d: %w", partition, err)
	}
	var off int64
	err = s.pool.QueryRow(ctx, `SELECT next_offset FROM consumer_offsets
		WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = $3`, group, topic, partition).Scan(&off)
	if err != nil {
		return 0, fmt.Errorf("offset of partition %d: %w", partition, err)
	}
	return off, nil
}

// Offsets returns group's stored next offsets of topic by partition.
func (s *Store) Offsets(ctx context.Context, group, topic string) (map[int]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT kafka_partition, next_offset FROM consumer_offsets
		WHERE consumer_group = $1 AND topic = $2`, group, topic)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	var p int
	var o int64
	_, err = pgx.ForEachRow(rows, []any{&p, &o}, func() error { out[p] = o; return nil })
	return out, err
}

// ResetOffsets sets every stored offset of group on topic back to
// FirstOffset: the consumers re-read the topic from the beginning (a replay);
// already stored events are skipped as duplicates. Running consumers notice
// at their next batch (ErrFenced) and seek. It returns the partitions reset.
func (s *Store) ResetOffsets(ctx context.Context, group, topic string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE consumer_offsets SET next_offset = $3, updated_at = now()
		WHERE consumer_group = $1 AND topic = $2`, group, topic, FirstOffset)
	return tag.RowsAffected(), err
}

// ApplyBatch applies recs, all read from one partition in offset order, in
// one transaction, together with the partition's next offset (the last
// record's offset + 1). expect is the offset this consumer believes is
// stored (where it started reading); when the stored offset differs the
// transaction is rolled back and ErrFenced returned. On any error nothing of
// the batch is stored.
func (s *Store) ApplyBatch(ctx context.Context, group string, expect int64, recs []Record) (ApplyResult, error) {
	var res ApplyResult
	if len(recs) == 0 {
		return res, nil
	}
	topic, partition := recs[0].Topic, recs[0].Partition
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = ApplyResult{}
		var stored int64
		err := tx.QueryRow(ctx, `SELECT next_offset FROM consumer_offsets
			WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = $3 FOR UPDATE`,
			group, topic, partition).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			stored = FirstOffset
			_, err = tx.Exec(ctx, `INSERT INTO consumer_offsets (consumer_group, topic, kafka_partition, next_offset)
				VALUES ($1, $2, $3, $4)`, group, topic, partition, FirstOffset)
		}
		if err != nil {
			return err
		}
		if stored != expect {
			return ErrFenced
		}
		for _, r := range recs {
			if err := applyOne(ctx, tx, r, &res); err != nil {
				return fmt.Errorf("offset %d: %w", r.Offset, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE consumer_offsets SET next_offset = $4, updated_at = now()
			WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = $3`,
			group, topic, partition, recs[len(recs)-1].Offset+1)
		return err
	})
	if err != nil {
		return ApplyResult{}, err
	}
	return res, nil
}

// cardLockClass is the first key of the per-card transaction advisory locks
// of applyOne (the second is the hash of the card token), apart from the
// single-key lock that goose takes while it migrates.
const cardLockClass int32 = 0x7265 // "re"

// applyOne stores one record inside the batch transaction.
func applyOne(ctx context.Context, tx pgx.Tx, r Record, res *ApplyResult) error {
	m := events.Message{Key: r.Key, Headers: r.Headers, Value: r.Value}
	ev, decErr := events.Decode(m)
	id, _ := m.Header(events.HeaderID)
	if !storable(id, maxIDLen) {
		// Missing, or no id PostgreSQL can key a row by: kept by position.
		id = fmt.Sprintf("kafka:%s/%d/%d", r.Topic, r.Partition, r.Offset)
	}
	typ, _ := m.Header(events.HeaderType)
	src, _ := m.Header(events.HeaderSource)
	typ, src = columnText(typ), columnText(src)
	// Understood: what pingate's encoder could have written, naming its
	// card by a card token. Anything else is kept as a record not
	// understood, so that a PAN in a field never reaches the history, the
	// API or a statement's file name.
	known := decErr == nil && ev.ID == id && events.Check(ev) == nil &&
		(ev.CardToken == "" || cardTokenRE.MatchString(ev.CardToken)) && storableEvent(ev)
	var (
		ceTime   *time.Time
		card     *string
		reverses *string
		value    []byte
	)
	if known {
		ceTime = &ev.Time
		if ev.CardToken != "" {
			card = &ev.CardToken
		}
		if ev.Reverses != "" {
			reverses = &ev.Reverses
		}
	} else {
		value = maskPANs(r.Value)
		if value == nil {
			value = []byte{}
		}
	}
	tag, err := tx.Exec(ctx, `INSERT INTO events (ce_id, ce_type, ce_source, ce_time, card_token, known, reverses, value,
			topic, kafka_partition, kafka_offset)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (ce_id) DO NOTHING`,
		id, typ, src, ceTime, card, known, reverses, value, r.Topic, r.Partition, r.Offset)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		res.Duplicates++
		return nil
	}
	res.Applied++
	if !known {
		res.Unknown++
		res.UnknownTypes = append(res.UnknownTypes, typ)
		return nil
	}
	if card == nil {
		res.NoCard++
		return nil
	}
	// A lock per card, held to the commit, taken before the row gets its
	// seq. Two transactions may store operations of one card at once: an
	// operation and its reversal on two partitions (the topic was
	// repartitioned between them), or any two of the card's events then.
	// Under READ COMMITTED neither sees the other's uncommitted row, so
	// without the lock a reversal read before its operation would never be
	// applied; and since a seq is drawn at the INSERT, not the commit, a
	// reader could see a card's row while one with a lower seq was still
	// uncommitted, and a page cursor (?after=) would skip that one. With
	// the lock the later transaction draws its seqs, and runs its UPDATEs,
	// after the earlier one committed. Cards do not share partitions
	// otherwise, so the lock is never contended then.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, cardLockClass, ev.CardToken); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO card_history (ce_id, card_token, ce_type, operation, outcome, response_code,
			reason, channel, acquirer, terminal, issuer, teller, supervisor, received, completed, reverses)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		ev.ID, ev.CardToken, ev.Type, string(ev.Operation), ev.Outcome, ev.Code, ev.Reason, string(ev.Channel),
		ev.Acquirer, ev.Terminal, ev.Issuer, ev.Teller, ev.Supervisor, ev.Received, ev.Completed, reverses)
	if err != nil {
		return err
	}
	if reverses != nil {
		// This event undoes another: mark it when it is an approved
		// operation, unless a reversal already did (the same rule as when
		// the reversal is read first, below).
		tag, err := tx.Exec(ctx, `UPDATE card_history SET reversed_by = $1, reversed_at = $2
			WHERE ce_id = $3 AND card_token = $4 AND outcome = $5 AND reversed_by IS NULL AND reverses IS NULL`,
			ev.ID, ev.Completed, *reverses, ev.CardToken, routing.OutcomeApproved)
		if err != nil {
			return err
		}
		res.Reversals += int(tag.RowsAffected())
		return nil
	}
	if ev.Outcome == routing.OutcomeApproved {
		// A reversal read before the event it undoes (possible only when
		// they were written to different partitions) is applied now.
		tag, err := tx.Exec(ctx, `UPDATE card_history h SET reversed_by = r.ce_id, reversed_at = r.completed
			FROM (SELECT ce_id, completed FROM card_history WHERE reverses = $1 AND card_token = $2
			      ORDER BY seq LIMIT 1) r
			WHERE h.ce_id = $1 AND h.reversed_by IS NULL`, ev.ID, ev.CardToken)
		if err != nil {
			return err
		}
		res.Reversals += int(tag.RowsAffected())
	}
	return nil
}

// Bounds on the text taken from a record. An event id or a body field longer
// than the producer's encoder allows (128 bytes) is not a pingate event; a
// header kept for a record not understood is cut to maxHeaderText. Both stay
// far below the size of a B-tree index entry (about 2.7 kB), which PostgreSQL
// refuses to exceed.
const (
	maxIDLen      = 128
	maxHeaderText = 256
)

// storable reports whether s fits a text column as it is: valid UTF-8
// without NUL (PostgreSQL's text refuses both) and at most n bytes. An empty
// s is not storable as an id.
func storable(s string, n int) bool {
	return s != "" && len(s) <= n && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// columnText returns header value s fit for a text column: invalid UTF-8
// and NUL replaced by U+FFFD, cut to maxHeaderText bytes at a rune boundary.
func columnText(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= maxHeaderText {
		return s
	}
	n := maxHeaderText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// storableEvent reports whether every text field of a decoded event fits
// its column. One that does not is kept as a record not understood: a record
// the database refuses would be retried forever and stall its partition.
func storableEvent(ev routing.Event) bool {
	for _, f := range []string{ev.Code, ev.Reason, ev.Acquirer, ev.Terminal, ev.Issuer, ev.CardToken,
		ev.Teller, ev.Supervisor, ev.Reverses, string(ev.Channel)} {
		if f != "" && !storable(f, maxIDLen) {
			return false
		}
	}
	return true
}

// maskPANs returns value with every run of 12 to 19 decimal digits that no
// other letter or digit touches — the shape of a PAN — masked as
// iso8583.MaskPAN masks a PAN (first 6 and last 4 digits kept). It returns
// value itself when there is none, else a masked copy.
func maskPANs(value []byte) []byte {
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	out, copied := value, false
	for i := 0; i < len(value); {
		if value[i] < '0' || value[i] > '9' {
			i++
			continue
		}
		j := i
		for j < len(value) && value[j] >= '0' && value[j] <= '9' {
			j++
		}
		if n := j - i; n >= 12 && n <= 19 && (i == 0 || !alnum(value[i-1])) && (j == len(value) || !alnum(value[j])) {
			if !copied {
				out, copied = bytes.Clone(value), true
			}
			copy(out[i:j], iso8583.MaskPAN(string(value[i:j])))
		}
		i = j
	}
	return out
}
