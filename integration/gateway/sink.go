package gateway

import (
	"context"
	"log/slog"

	"pingate/integration/outbox"
	"pingate/routing"
)

// loggedSink is the flow's outcome sink: the journal, with every failed
// publication logged. The flow answers such an outcome 91
// journal_unavailable (and reverses an approval), whatever the channel; the
// log line says which operation it was. The event carries no secret, and
// neither do the journal's errors (they name a field, never its value).
type loggedSink struct {
	*outbox.Journal
	log *slog.Logger
}

var _ routing.OutcomeSink = loggedSink{}

func (s loggedSink) Publish(ctx context.Context, ev routing.Event) error {
	err := s.Journal.Publish(ctx, ev)
	if err != nil {
		s.log.ErrorContext(ctx, "outcome event not recorded", "event_id", ev.ID, "type", ev.Type, "channel", string(ev.Channel),
			"acquirer", ev.Acquirer, "response_code", ev.Code, "err", err)
	}
	return err
}
