package gateway

import (
	"fmt"

	"pingate/integration/events"
	"pingate/integration/outbox"
	"pingate/routing"
)

// EventLine is an event as `events tail --json` and GET /admin/events show
// it. Reverses travels as a header (ce_reverses), not in the body: the line
// carries it beside the body's fields.
type EventLine struct {
	routing.Event
	Reverses string `json:"reverses,omitempty"`
}

// DecodeEntries decodes journal entries into events; an entry that does not
// decode is named by its sequence number.
func DecodeEntries(es []outbox.Entry) ([]routing.Event, error) {
	evs := make([]routing.Event, 0, len(es))
	for _, e := range es {
		ev, err := events.Decode(e.Message)
		if err != nil {
			return nil, fmt.Errorf("journal entry %d: %w", e.Seq, err)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}
