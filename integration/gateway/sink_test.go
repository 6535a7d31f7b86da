package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pingate/integration/events"
	"pingate/integration/outbox"
	"pingate/routing"
)

// TestLoggedSinkLogsFailedPublications: every outcome the journal refuses
// or cannot store is logged, naming the event and not its card.
func TestLoggedSinkLogsFailedPublications(t *testing.T) {
	j, err := outbox.Open(outbox.Config{Dir: filepath.Join(t.TempDir(), "journal"), Source: events.Source("sink-test")})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := loggedSink{Journal: j, log: slog.New(slog.NewJSONHandler(&logs, nil))}
	now := time.Now()
	ev := routing.Event{ID: "a3a4c6f2-5b0e-4b8e-9a57-0e4a5d8c9f10", Operation: routing.OpUnblock, Outcome: routing.OutcomeApproved,
		Type: routing.EventType(routing.OpUnblock, routing.OutcomeApproved), Code: "00", Channel: routing.ChannelBranch,
		Acquirer: "200001", Terminal: "BR0117T1", MaskedPAN: "622848******0017", CardToken: "tok", Teller: "123456789012",
		Received: now, Completed: now}
	if err := s.Publish(context.Background(), ev); !errors.Is(err, events.ErrUnsafeEvent) {
		t.Fatalf("Publish(teller like a PAN) = %v, want events.ErrUnsafeEvent", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := j.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ev.Teller = "T0117-07"
	if err := s.Publish(context.Background(), ev); err == nil {
		t.Fatal("Publish on a closed journal = nil, want an error")
	}
	if n := strings.Count(logs.String(), `"msg":"outcome event not recorded"`); n != 2 || !strings.Contains(logs.String(), ev.ID) {
		t.Errorf("%d failed publications logged, want 2 naming the event", n)
	}
	if strings.Contains(logs.String(), "123456789012") {
		t.Errorf("the log repeats the refused identifier")
	}
}
