package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"pingate/integration/branchapi"
	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/records"
	"pingate/integration/testservers"
	"pingate/iso8583"
	"pingate/routing"
)

// The records service against a real Kafka broker and a real PostgreSQL
// (integration/testservers; skipped without them, failed under CI).

// recordsDB makes a fresh database, migrated by "pingate records migrate".
func recordsDB(t *testing.T, server string) string {
	t.Helper()
	url := testservers.CreateDatabase(t, server)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"records", "migrate", "--postgres", url}, &out, &errOut); code != 0 {
		t.Fatalf("records migrate: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "applied migration 00001") {
		t.Fatalf("records migrate printed %q, want the applied migration", out.String())
	}
	return url
}

// recordsService is "pingate records run" running in-process.
type recordsService struct {
	cancel      context.CancelFunc
	done        chan int
	out, errOut *syncBuffer
	api, admin  string
	certs       string
}

var (
	recordsAPIRE   = regexp.MustCompile(`records api listening on (\S+)`)
	recordsAdminRE = regexp.MustCompile(`records admin listening on (\S+)`)
)

func startRecords(t *testing.T, pgURL, brokers, topic string, extra ...string) *recordsService {
	t.Helper()
	certs := filepath.Join(t.TempDir(), "certs")
	ctx, cancel := context.WithCancel(context.Background())
	s := &recordsService{cancel: cancel, done: make(chan int, 1), out: &syncBuffer{}, errOut: &syncBuffer{}, certs: certs}
	args := append([]string{"records", "run", "--postgres", pgURL, "--kafka", brokers, "--topic", topic,
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--dev-certs", certs, "--session-timeout", "6s"}, extra...)
	go func() { s.done <- run(ctx, args, s.out, s.errOut) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := s.out.String()
		if m, a := recordsAPIRE.FindStringSubmatch(out), recordsAdminRE.FindStringSubmatch(out); m != nil && a != nil {
			s.api, s.admin = m[1], a[1]
			return s
		}
		select {
		case code := <-s.done:
			t.Fatalf("records run exited %d: %s", code, s.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("records run did not print its addresses: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *recordsService) stop(t *testing.T) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if code := <-s.done; code != 0 {
		t.Errorf("records run exited %d: %s", code, s.errOut.String())
	}
}

// client is an mTLS client with the development client certificate.
func (s *recordsService) client(t *testing.T) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.certs, recordsDevClient+".pem"), filepath.Join(s.certs, recordsDevClient+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(s.certs, branchapi.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
}

// getJSON GETs url and checks its status. Failure messages show the URL and
// body with every run of 12 or more digits masked: a test that sends a PAN
// must not print it.
func getJSON(t *testing.T, c *http.Client, url string, wantStatus int, v any) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", maskDigitRuns(url), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s = %d %s, want %d", maskDigitRuns(url), resp.StatusCode, maskDigitRuns(string(b)), wantStatus)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: body %s: %v", maskDigitRuns(url), maskDigitRuns(string(b)), err)
		}
	}
	return string(b)
}

var digitRun = regexp.MustCompile(`[0-9]{12,}`)

func maskDigitRuns(s string) string {
	return digitRun.ReplaceAllStringFunc(s, iso8583.MaskPAN)
}

func randomToken(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testEvents are the records a test writes: approved and declined changes of
// several cards, reversals of some approved ones, and records the service
// does not understand.
type testEvents struct {
	msgs      []kafka.Message
	ids       map[string]bool // distinct ce_ids
	reversals map[string]string
	cards     []string
}

func makeEvents(t *testing.T, cards, perCard int, day time.Time) *testEvents {
	t.Helper()
	enc, err := events.NewEncoder(events.Source("records-test"))
	if err != nil {
		t.Fatal(err)
	}
	te := &testEvents{ids: map[string]bool{}, reversals: map[string]string{}}
	add := func(m events.Message) {
		km := kafka.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
		te.msgs = append(te.msgs, km)
		id, _ := m.Header(events.HeaderID)
		te.ids[id] = true
	}
	for c := range cards {
		token := randomToken(t)
		te.cards = append(te.cards, token)
		for i := range perCard {
			at := day.Add(time.Duration(c*perCard+i) * time.Minute)
			outcome, code := routing.OutcomeApproved, "00"
			if i%4 == 3 {
				outcome, code = routing.OutcomeDeclined, "55"
			}
			ev := routing.Event{ID: uuid.NewString(), Operation: routing.OpChange, Outcome: outcome, Code: code,
				Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
				MaskedPAN: "424242******4242", CardToken: token, Received: at, Completed: at.Add(time.Second)}
			ev.Type = routing.EventType(ev.Operation, ev.Outcome)
			m, err := enc.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			add(m)
			if i%5 == 1 && outcome == routing.OutcomeApproved {
				rev := ev
				rev.ID, rev.Outcome, rev.Code, rev.Reason = uuid.NewString(), routing.OutcomeReversed, "68", "acquirer_reversal"
				rev.Type = routing.EventType(rev.Operation, rev.Outcome)
				rev.Reverses = ev.ID
				rev.Completed = ev.Completed.Add(time.Second)
				rm, err := enc.Encode(rev)
				if err != nil {
					t.Fatal(err)
				}
				add(rm)
				te.reversals[ev.ID] = rev.ID
			}
		}
	}
	// A type from a newer producer, and a record that is no CloudEvent.
	add(events.Message{Key: []byte("x"), Value: []byte(`{"future":true}`), Headers: []events.Header{
		{Key: events.HeaderSpecVersion, Value: []byte("1.0")}, {Key: events.HeaderID, Value: []byte(uuid.NewString())},
		{Key: events.HeaderType, Value: []byte("pingate.pin.something.new.v2")}, {Key: events.HeaderContentType, Value: []byte("application/json")}}})
	add(events.Message{Key: []byte("y"), Value: []byte("not json"), Headers: []events.Header{
		{Key: events.HeaderID, Value: []byte(uuid.NewString())}}})
	return te
}

func writeEvents(t *testing.T, brokers, topic string, msgs []kafka.Message) {
	t.Helper()
	// A transport of its own: kafka.DefaultTransport keeps its connection
	// pools' goroutines after the writer closes (goleak reports them).
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond, Transport: tr}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write %d events: %v", len(msgs), err)
	}
}

// topicIDs reads every partition of topic from the first offset to its end
// with a plain kafka-go reader, independent of the service, and returns the
// distinct ce_ids (records without one count by position, as the service
// keeps them), the number of records, and how many distinct ce_ids carry
// ce_reverses (reversal events).
func topicIDs(t *testing.T, brokers, topic string, partitions int) (map[string]bool, int, int) {
	t.Helper()
	ids := map[string]bool{}
	reversing := map[string]bool{}
	n := 0
	for p := range partitions {
		conn, err := kafka.DialLeader(context.Background(), "tcp", brokers, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		last, err := conn.ReadLastOffset()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokers}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read partition %d: %v", p, err)
			}
			n++
			id, reverses := "", false
			for _, h := range m.Headers {
				switch h.Key {
				case events.HeaderID:
					id = string(h.Value)
				case events.HeaderReverses:
					reverses = true
				}
			}
			if id == "" {
				id = fmt.Sprintf("kafka:%s/%d/%d", topic, p, m.Offset)
			}
			ids[id] = true
			if reverses {
				reversing[id] = true
			}
			if m.Offset+1 >= last {
				break
			}
		}
		cancel()
		r.Close()
	}
	return ids, n, len(reversing)
}

// dbState is what the records database holds.
type dbState struct {
	ids      map[string]bool
	reversed map[string]string // ce_id -> reversed_by
	history  int
}

func readDB(t *testing.T, pgURL string) dbState {
	t.Helper()
	ctx := context.Background()
	s, err := records.Open(ctx, pgURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids, rev, hist, err := s.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dbState{ids: ids, reversed: rev, history: hist}
}

// waitForDB polls until the database holds want distinct events (a generous
// deadline; the test asserts on the content, not on the time taken).
func waitForDB(t *testing.T, pgURL string, want int) dbState {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		st := readDB(t, pgURL)
		if len(st.ids) >= want || time.Now().After(deadline) {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkExactlyOnce compares the database with the topic as an independent
// reader sees it.
func checkExactlyOnce(t *testing.T, st dbState, topicIDs map[string]bool, reversals map[string]string) {
	t.Helper()
	var missing, extra []string
	for id := range topicIDs {
		if !st.ids[id] {
			missing = append(missing, id)
		}
	}
	for id := range st.ids {
		if !topicIDs[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("database holds %d events, topic %d distinct ce_ids: %d missing (first %v), %d not on the topic",
			len(st.ids), len(topicIDs), len(missing), missing[:min(3, len(missing))], len(extra))
	}
	for orig, rev := range reversals {
		if st.reversed[orig] != rev {
			t.Errorf("event %s reversed_by = %q, want %s", orig, st.reversed[orig], rev)
		}
	}
	if len(st.reversed) != len(reversals) {
		t.Errorf("%d operations marked reversed, want %d", len(st.reversed), len(reversals))
	}
}

func recordsMetric(t *testing.T, adminAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sum := 0.0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
			sum += v
		}
	}
	return sum
}

// TestRecordsExactlyOnceAPIAndStatements: events written twice (an
// at-least-once producer), reversals and records the service does not know
// reach PostgreSQL exactly once through "pingate records run"; the inquiry
// API answers a card's history, an operation and a statement over mutual
// TLS; "records statements" writes each card's statement once; a full replay
// of the topic ("records replay") changes nothing.
func TestRecordsExactlyOnceAPIAndStatements(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic, partitions = "records-e1", 3
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	pgURL := recordsDB(t, testservers.PostgresURL(t))

	day := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	te := makeEvents(t, 12, 8, day)
	writeEvents(t, k.Brokers, topic, te.msgs)
	writeEvents(t, k.Brokers, topic, te.msgs[:len(te.msgs)/2]) // re-sent: duplicates
	svc := startRecords(t, pgURL, k.Brokers, topic)

	want, n, _ := topicIDs(t, k.Brokers, topic, partitions)
	if len(want) != len(te.ids) || n != len(te.msgs)+len(te.msgs)/2 {
		t.Fatalf("independent reader: %d distinct ids in %d records, want %d in %d", len(want), n, len(te.ids), len(te.msgs)+len(te.msgs)/2)
	}
	st := waitForDB(t, pgURL, len(want))
	checkExactlyOnce(t, st, want, te.reversals)
	if got := recordsMetric(t, svc.admin, "pingate_records_unknown_events_total"); got != 2 {
		t.Errorf("unknown events metric = %v, want 2", got)
	}
	if got := recordsMetric(t, svc.admin, "pingate_records_duplicates_skipped_total"); got != float64(len(te.msgs)/2) {
		t.Errorf("duplicates metric = %v, want %d", got, len(te.msgs)/2)
	}

	// The inquiry API, over mutual TLS.
	c := svc.client(t)
	base := "https://" + svc.api
	card := te.cards[0]
	var page struct {
		CardToken  string              `json:"card_token"`
		Operations []records.Operation `json:"operations"`
		Next       string              `json:"next"`
	}
	var all []records.Operation
	url := base + "/v1/cards/" + card + "/operations?limit=3"
	for {
		page.Next = ""
		getJSON(t, c, url, http.StatusOK, &page)
		all = append(all, page.Operations...)
		if page.Next == "" {
			break
		}
		url = base + "/v1/cards/" + card + "/operations?limit=3&after=" + page.Next
	}
	wantOps := 8 + 2 // 8 operations, 2 of them (i=1, i=6) reversed by an event of their own
	if len(all) != wantOps {
		t.Fatalf("history of card: %d operations over pages, want %d", len(all), wantOps)
	}
	var one records.Operation
	getJSON(t, c, base+"/v1/operations/"+all[1].EventID, http.StatusOK, &one)
	if one.EventID != all[1].EventID || one.CardToken != card {
		t.Errorf("operation %s = %+v", all[1].EventID, one)
	}
	if rev, ok := te.reversals[one.EventID]; !ok || one.ReversedBy != rev || one.Stands {
		t.Errorf("operation %s: reversed_by %q stands %v, want reversed by %q", one.EventID, one.ReversedBy, one.Stands, rev)
	}
	var stmt records.Statement
	stURL := base + "/v1/cards/" + card + "/statement?from=2026-11-01&to=2026-11-30"
	stBefore := getJSON(t, c, stURL, http.StatusOK, &stmt)
	if len(stmt.Operations) != wantOps || stmt.Totals["reversed_after_approval"] != 2 {
		t.Errorf("statement: %d operations, totals %v; want %d with 2 reversed after approval", len(stmt.Operations), stmt.Totals, wantOps)
	}
	html := getJSON(t, c, stURL+"&format=html", http.StatusOK, nil)
	if !strings.Contains(html, "<table>") || !strings.Contains(html, card) {
		t.Errorf("HTML statement lacks the table or the card token")
	}
	// A PAN is refused, without being repeated.
	body := getJSON(t, c, base+"/v1/cards/4242424242424242/operations", http.StatusBadRequest, nil)
	if strings.Contains(body, "4242424242424242") {
		t.Errorf("refusal repeats the PAN (body of %d bytes not shown: it holds the PAN)", len(body))
	}
	getJSON(t, c, base+"/v1/operations/"+uuid.NewString(), http.StatusNotFound, nil)
	// No client certificate: no API.
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: c.Transport.(*http.Transport).TLSClientConfig.RootCAs}}}
	if resp, err := noCert.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("GET without a client certificate = %d, want a TLS failure", resp.StatusCode)
	}

	// Statements: once per card, never twice.
	outDir := t.TempDir()
	stmts := func() string {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"records", "statements", "--postgres", pgURL, "--month", "2026-11", "--out", outDir}, &out, &errOut); code != 0 {
			t.Fatalf("records statements: exit %d: %s", code, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	if got, want := stmts(), fmt.Sprintf("statements 2026-11: %d written, 0 already sent", len(te.cards)); got != want {
		t.Errorf("first run: %q, want %q", got, want)
	}
	fileBefore, err := os.ReadFile(filepath.Join(outDir, "2026-11", card+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stmts(), fmt.Sprintf("statements 2026-11: 0 written, %d already sent", len(te.cards)); got != want {
		t.Errorf("re-run: %q, want %q", got, want)
	}

	// A full replay from the beginning of the topic, while running.
	dupsBefore := recordsMetric(t, svc.admin, "pingate_records_duplicates_skipped_total")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"records", "replay", "--postgres", pgURL, "--topic", topic}, &out, &errOut); code != 0 {
		t.Fatalf("records replay: exit %d: %s", code, errOut.String())
	}
	deadline := time.Now().Add(120 * time.Second)
	for recordsMetric(t, svc.admin, "pingate_records_duplicates_skipped_total") < dupsBefore+float64(n) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := recordsMetric(t, svc.admin, "pingate_records_duplicates_skipped_total"); got != dupsBefore+float64(n) {
		t.Errorf("after replay: duplicates = %v, want %v (every record re-read and skipped)", got, dupsBefore+float64(n))
	}
	checkExactlyOnce(t, readDB(t, pgURL), want, te.reversals)
	if stAfter := getJSON(t, c, stURL, http.StatusOK, nil); stAfter != stBefore {
		t.Errorf("statement changed by the replay:\n%s\nwant\n%s", stAfter, stBefore)
	}
	rendered, _ := json.MarshalIndent(stmt, "", "  ")
	if !bytes.Equal(bytes.TrimSpace(fileBefore), bytes.TrimSpace(rendered)) {
		t.Errorf("statement file differs from the API's statement")
	}
}

// TestRecordsRefusesWithoutPostgres: there is no embedded default.
func TestRecordsRefusesWithoutPostgres(t *testing.T) {
	t.Setenv(postgresEnv, "")
	tests := []struct {
		give []string
		want string
	}{
		{[]string{"records", "run", "--kafka", "127.0.0.1:1"}, "records needs PostgreSQL"},
		{[]string{"records", "migrate"}, "records needs PostgreSQL"},
		{[]string{"records", "migrate", "--postgres", "postgres://u:s3cret@127.0.0.1:1/db"}, "must not carry a password"},
		{[]string{"records", "statements", "--month", "2026-13", "--out", "x", "--postgres", "postgres://u@127.0.0.1:1/db"}, "YYYY-MM"},
		{[]string{"records"}, "missing sub-command"},
		{[]string{"records", "run", "--kafka", "127.0.0.1:1", "--postgres", "postgres://u@127.0.0.1:1/db", "--tls-key", "k.pem"}, "TLS flags given without --listen"},
		{[]string{"records", "run", "--kafka", "127.0.0.1:1", "--postgres", "postgres://u@127.0.0.1:1/db", "--dev-certs", "dc"}, "TLS flags given without --listen"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tt.give, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), tt.want) || strings.Contains(errOut.String(), "s3cret") {
			t.Errorf("pingate %v: exit %d, stderr %q; want failure naming %q", tt.give, code, errOut.String(), tt.want)
		}
	}
}

// TestRecordsUnderLoad: "pingate-dev load" drives the gateway (real Kafka relay)
// while "pingate records run" consumes its topic; afterwards every answered
// request's event is in the records database exactly once, and a card's
// history and statement come back through the API for its token.
func TestRecordsUnderLoad(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic, partitions = "records-load", 3
	testservers.CreateTopic(t, k.Brokers, topic, partitions)
	pgURL := recordsDB(t, testservers.PostgresURL(t))
	g := gatewaytest.Start(t, func(cfg *gateway.Config) {
		cfg.Instance = "recordsload"
		cfg.Events.KafkaBrokers, cfg.Events.KafkaTopic = []string{k.Brokers}, topic
		raiseLimitsForLoad(cfg)
	})
	ctx := context.Background()
	if err := waitReady(ctx, g); err != nil {
		t.Fatal(err)
	}
	svc := startRecords(t, pgURL, k.Brokers, topic)

	rep := lastJSON(t, "load", "--target", g.AcquirerAddr(), "--requests", "300", "--duration", "60s", "--warmup", "0",
		"--concurrency", "2x4", "--cards", "60", "--card-offset", "2950", "--json", "--quiet", "--rand-seed", "5")
	if rep.Requests < 300 || rep.Errors != 0 {
		t.Fatalf("load: %d requests, %d errors; want 300+ answered, none failed", rep.Requests, rep.Errors)
	}
	answered := int(rep.Requests)
	waitForDB(t, pgURL, answered)
	// Besides one event per answer, the topic may carry the gateway's own
	// reversal events: a request answered 91 after its outcome could not be
	// recorded in time has its write-ahead reversal delivered to the issuer,
	// and that delivery is an event of its own (docs/events.md).
	want, _, reversals := topicIDs(t, k.Brokers, topic, partitions)
	if len(want) != answered+reversals {
		t.Errorf("topic holds %d distinct events for %d answered requests and %d reversals", len(want), rep.Requests, reversals)
	}
	st := waitForDB(t, pgURL, len(want))
	checkExactlyOnce(t, st, want, nil)
	if st.history != len(want) {
		t.Errorf("card history rows = %d, want one per event (%d: %d answered requests, %d reversals)", st.history, len(want), rep.Requests, reversals)
	}

	s, err := records.Open(ctx, pgURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	cards, err := s.CardsWithActivity(ctx, time.Now().AddDate(0, 0, -1), time.Now().AddDate(0, 0, 1))
	s.Close()
	if err != nil || len(cards) == 0 {
		t.Fatalf("cards with activity: %v, %v", cards, err)
	}
	c := svc.client(t)
	var page struct {
		Operations []records.Operation `json:"operations"`
	}
	getJSON(t, c, "https://"+svc.api+"/v1/cards/"+cards[0]+"/operations?limit=100", http.StatusOK, &page)
	var stmt records.Statement
	from, to := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly), time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	getJSON(t, c, "https://"+svc.api+"/v1/cards/"+cards[0]+"/statement?from="+from+"&to="+to, http.StatusOK, &stmt)
	if len(page.Operations) == 0 || len(stmt.Operations) != len(page.Operations) {
		t.Errorf("card %s: %d operations in the history, %d in the statement of these days; want the same, at least one",
			cards[0], len(page.Operations), len(stmt.Operations))
	}
	for _, o := range page.Operations {
		if o.CardToken != cards[0] || o.ResponseCode != "00" || !o.Stands {
			t.Errorf("operation %+v: want an approved, standing operation of the card", o)
		}
	}
}
