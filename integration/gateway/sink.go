package gateway

import (
	"context"
	"log/slog"

	"pingate/integration/outbox"
	"pingate/integration/reversalstore"
	"pingate/routing"
)

// loggedSink is the flow's outcome sink: the journal, with every failed
// publication logged. The flow answers such an outcome 91
// journal_unavailable (and reverses an approval), whatever the channel; the
// log line says which operation it was. The event carries no secret, and
// neither do the journal's errors (they name a field, never its value).
type loggedSink struct {
	*outbox.Journal
	revs *reversalstore.Store // kept in the journal's database
	log  *slog.Logger
}

var (
	_ routing.OutcomeSink     = loggedSink{}
	_ routing.DischargingSink = loggedSink{}
)

// PublishDischarging implements routing.DischargingSink: ev's entry and the
// delete of advice adviceID in one synced batch of the journal's database.
func (s loggedSink) PublishDischarging(ctx context.Context, ev routing.Event, adviceID string) error {
	return s.logged(ctx, ev, s.Journal.PublishWith(ctx, ev, s.revs.Discharge(adviceID)))
}

func (s loggedSink) Publish(ctx context.Context, ev routing.Event) error {
	return s.logged(ctx, ev, s.Journal.Publish(ctx, ev))
}

func (s loggedSink) logged(ctx context.Context, ev routing.Event, err error) error {
	if err != nil {
		s.log.ErrorContext(ctx, "outcome event not recorded", "event_id", ev.ID, "type", ev.Type, "channel", string(ev.Channel),
			"acquirer", ev.Acquirer, "response_code", ev.Code, "err", err)
	}
	return err
}
