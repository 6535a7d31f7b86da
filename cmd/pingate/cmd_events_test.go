package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"pingate/integration/events"
	"pingate/integration/gateway"
	"pingate/integration/outbox"
	"pingate/integration/testservers"
	"pingate/routing"
)

var tailT0 = time.Date(2025, 11, 25, 9, 0, 0, 0, time.UTC)

// tailEvent is event i: every event type in turn, a few cards.
func tailEvent(i int) routing.Event {
	op := events.Operations[(i/len(events.Outcomes))%len(events.Operations)]
	oc := events.Outcomes[i%len(events.Outcomes)]
	code := map[string]string{"approved": "00", "declined": "55", "reversed": "91",
		"limited": "65", "rejected": "14", "failed": "96"}[oc]
	at := tailT0.Add(time.Duration(i) * time.Second)
	ev := routing.Event{
		ID:   uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint("tail-", i))).String(),
		Type: routing.EventType(op, oc), Time: at, Operation: op, Outcome: oc, Code: code,
		Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042",
		MaskedPAN: "424242******4242", CardToken: fmt.Sprintf("card%028x", i%3),
		Received: at.Add(-time.Second), Completed: at,
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	if oc == routing.OutcomeReversed {
		// An acquirer's reversal names the approved event it undoes.
		ev.Reason, ev.Code, ev.Reverses = routing.ReasonAcquirerReversal, "68", uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint("tail-", i-1))).String()
	}
	return ev
}

// writeJournal publishes n events into a journal in a new directory and
// shuts it down, as a stopped gateway leaves it.
func writeJournal(t *testing.T, n int, relay outbox.RelayConfig) string {
	t.Helper()
	dir := t.TempDir()
	j, err := outbox.Open(outbox.Config{Dir: dir, Source: events.Source("gw-test"), Relay: relay})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := j.Publish(context.Background(), tailEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := j.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if relay.Brokers != nil && j.Stats().Lag != 0 {
		t.Fatalf("relay left %d events undelivered", j.Stats().Lag)
	}
	return dir
}

func runTail(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(ctx, append([]string{"events", "tail"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestEventsTailJournal(t *testing.T) {
	dir := writeJournal(t, 12, outbox.RelayConfig{})
	tests := []struct {
		name      string
		args      []string
		wantFirst int // index of the first event printed
		wantN     int
	}{
		{"default newest 10", nil, 2, 10},
		{"newest 3", []string{"-n", "3"}, 9, 3},
		{"oldest 2", []string{"--from-beginning", "-n", "2"}, 0, 2},
		{"all", []string{"-n", "0"}, 0, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runTail(t, context.Background(), append([]string{"--journal", dir}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			ls := lines(out)
			if len(ls) != tt.wantN {
				t.Fatalf("%d lines, want %d:\n%s", len(ls), tt.wantN, out)
			}
			for k, l := range ls {
				ev := tailEvent(tt.wantFirst + k)
				want := fmt.Sprintf("%s %s %s 424242******4242 %s id=%s card=%s trace=%s",
					ev.Time.Format(time.RFC3339Nano), ev.Type, ev.Code, ev.Outcome, ev.ID, ev.CardToken, ev.TraceID)
				if ev.Reverses != "" {
					want += " reverses=" + ev.Reverses
				}
				if l != want {
					t.Errorf("line %d = %q, want %q", k, l, want)
				}
			}
		})
	}
}

func TestEventsTailJSON(t *testing.T) {
	dir := writeJournal(t, 4, outbox.RelayConfig{})
	code, out, errs := runTail(t, context.Background(), "--journal", dir, "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	ls := lines(out)
	if len(ls) != 4 {
		t.Fatalf("%d lines, want 4", len(ls))
	}
	for k, l := range ls {
		var got struct {
			routing.Event
			Reverses string `json:"reverses"`
		}
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v", k, err)
		}
		want := tailEvent(k)
		if got.ID != want.ID || got.Type != want.Type || got.Code != want.Code || got.MaskedPAN != want.MaskedPAN ||
			!got.Time.Equal(want.Time) || got.Reverses != want.Reverses {
			t.Errorf("line %d = %+v, want %+v", k, got, want)
		}
	}
}

func TestEventsTailErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no source", nil, 2, "exactly one of --journal, --kafka or --admin"},
		{"journal and admin", []string{"--journal", "/x", "--admin", "127.0.0.1:1"}, 2, "exactly one"},
		{"admin from the beginning", []string{"--admin", "127.0.0.1:1", "--from-beginning"}, 2, "--admin prints the newest"},
		{"admin unreachable", []string{"--admin", "127.0.0.1:1"}, 1, "admin listener"},
		{"both sources", []string{"--journal", "/x", "--kafka", "k:1", "--topic", "t"}, 2, "exactly one"},
		{"kafka without topic", []string{"--kafka", "k:1"}, 2, "--topic"},
		{"follow a journal", []string{"--journal", "/x", "--follow"}, 2, "--follow need --kafka"},
		{"negative n", []string{"--journal", "/x", "-n", "-1"}, 2, "-n"},
		{"bad flag", []string{"--nope"}, 2, "nope"},
		{"missing journal", []string{"--journal", "/nonexistent/journal"}, 1, "open journal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runTail(t, context.Background(), tt.args...)
			if code != tt.wantCode || !strings.Contains(errs, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, errs, tt.wantCode, tt.wantErr)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if strings.Count(errs, "\n") != 1 {
				t.Errorf("stderr has %d lines, want 1", strings.Count(errs, "\n"))
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"events"}, &out, &errb); code != 2 {
		t.Errorf("pingate events: exit %d, want 2", code)
	}
}

// TestEventsTailKafka reads the topic a relay filled on a real broker, then
// follows it while more events arrive.
func TestEventsTailKafka(t *testing.T) {
	k := testservers.StartKafka(t)
	const topic = "pingate.events.tail"
	testservers.CreateTopic(t, k.Brokers, topic, 3)
	relay := outbox.RelayConfig{Brokers: []string{k.Brokers}, Topic: topic,
		WriteTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, CallTimeout: 5 * time.Second}
	writeJournal(t, 9, relay)

	code, out, errs := runTail(t, context.Background(), "--kafka", k.Brokers, "--topic", topic, "-n", "4")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	ls := lines(out)
	if len(ls) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(ls), out)
	}
	reversals := 0
	for k, l := range ls {
		ev := tailEvent(5 + k)
		if !strings.Contains(l, "id="+ev.ID) || !strings.HasPrefix(l, ev.Time.Format(time.RFC3339Nano)) {
			t.Errorf("line %d = %q, want event %d", k, l, 5+k)
		}
		// An acquirer's reversal keeps its ce_reverses header through the
		// journal, the relay and the broker.
		if ev.Reverses != "" {
			reversals++
			if !strings.HasSuffix(l, " reverses="+ev.Reverses) {
				t.Errorf("line %d = %q, want it to name the reversed event %s", k, l, ev.Reverses)
			}
		}
	}
	if reversals == 0 {
		t.Error("no acquirer reversal among the events read: the test checks nothing about ce_reverses")
	}
	code, out, _ = runTail(t, context.Background(), "--kafka", k.Brokers, "--topic", topic, "--from-beginning", "-n", "2", "--json")
	if ls := lines(out); code != 0 || len(ls) != 2 || !strings.Contains(ls[0], tailEvent(0).ID) {
		t.Errorf("--from-beginning -n 2: exit %d, output %q", code, out)
	}

	// --follow: prints the newest 1, then events published afterwards.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		var errb bytes.Buffer
		done <- run(ctx, []string{"events", "tail", "--kafka", k.Brokers, "--topic", topic, "--follow", "-n", "1"}, w, &errb)
	}()
	waitLines := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for len(lines(w.String())) < n {
			if time.Now().After(deadline) {
				t.Fatalf("follow printed %d lines, want %d", len(lines(w.String())), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLines(1)
	// More events through a second journal (events 0..2 again as new records).
	writeJournal(t, 3, relay)
	waitLines(4)
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("follow: exit %d after interrupt, want 0", code)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEventsTailAdmin: the newest events of a running gateway, through its
// admin listener: `events tail --admin` prints them as from a journal, and
// GET /admin/events refuses an out-of-range n.
func TestEventsTailAdmin(t *testing.T) {
	g := opsGateway(t, nil)
	admin := g.AdminAddr()
	ctx, c := atmSession(t, g)
	card := opsPopulation(g.Config().IssuerSim).Card(7500)
	if ans, err := c.Do(ctx, opsFieldsUnder(t, card, "ADM07500", devATMKey(t))); err != nil || ans.ResponseCode != "00" {
		t.Fatalf("PIN change = %v, %v; want 00", ans, err)
	}

	code, out, errs := runTail(t, ctx, "--admin", admin, "-n", "5")
	ls := lines(out)
	if code != 0 || len(ls) == 0 {
		t.Fatalf("events tail --admin: exit %d, stderr %q, %d lines", code, errs, len(ls))
	}
	masked := card.PAN[:6] + "******" + card.PAN[len(card.PAN)-4:]
	if last := ls[len(ls)-1]; !strings.Contains(last, " pingate.pin.changed.v1 00 "+masked+" approved ") {
		t.Errorf("newest event line = %q, want the PIN change's", last)
	}
	if strings.Contains(out, card.PAN) {
		t.Error("events tail --admin printed a full PAN")
	}
	code, out, _ = runTail(t, ctx, "--admin", admin, "-n", "1", "--json")
	var l gateway.EventLine
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &l) != nil || l.Type != "pingate.pin.changed.v1" || l.MaskedPAN != masked {
		t.Errorf("events tail --admin --json = exit %d, %q", code, out)
	}
	if code, _, errs := runTail(t, ctx, "--admin", admin, "-n", "0"); code != 2 || !strings.Contains(errs, "--admin") {
		t.Errorf("events tail --admin -n 0: exit %d, stderr %q; want a usage error", code, errs)
	}
	resp, err := http.Get("http://" + admin + "/admin/events?n=5000")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /admin/events?n=5000 = %s, want 400", resp.Status)
	}
}
