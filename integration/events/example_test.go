package events_test

import (
	"fmt"
	"time"

	"pingate/integration/events"
	"pingate/routing"
)

// The record of an approved PIN change: the key and ce_subject are the card
// token, the PAN appears masked in the body only.
func ExampleEncoder_Encode() {
	enc, err := events.NewEncoder(events.Source("gw-1"))
	if err != nil {
		panic(err)
	}
	at := time.Date(2025, 11, 25, 9, 30, 0, 0, time.UTC)
	m, err := enc.Encode(routing.Event{
		ID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427", Type: "pingate.pin.changed.v1", Time: at,
		Operation: routing.OpChange, Outcome: routing.OutcomeApproved, Code: "00",
		Channel: routing.ChannelATM, Acquirer: "ACQ1", Terminal: "ATM00042", Issuer: "ISS1",
		MaskedPAN: "424242******4242", CardToken: "9b2d0c8f4e6a1b3c5d7e9f0a1b2c3d4e",
		Received: at.Add(-200 * time.Millisecond), Completed: at,
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("key %s\n", m.Key)
	for _, h := range m.Headers {
		fmt.Printf("%s: %s\n", h.Key, h.Value)
	}
	fmt.Printf("%s\n", m.Value)
	// Output:
	// key 9b2d0c8f4e6a1b3c5d7e9f0a1b2c3d4e
	// ce_specversion: 1.0
	// ce_id: 1b4e28ba-2fa1-11d2-883f-0016d3cca427
	// ce_type: pingate.pin.changed.v1
	// ce_source: /pingate/gw-1
	// ce_time: 2025-11-25T09:30:00Z
	// content-type: application/json
	// ce_subject: 9b2d0c8f4e6a1b3c5d7e9f0a1b2c3d4e
	// ce_partitionkey: 9b2d0c8f4e6a1b3c5d7e9f0a1b2c3d4e
	// {"operation":"change","outcome":"approved","response_code":"00","channel":"atm","acquirer":"ACQ1","terminal":"ATM00042","issuer":"ISS1","masked_pan":"424242******4242","card_token":"9b2d0c8f4e6a1b3c5d7e9f0a1b2c3d4e","received":"2025-11-25T09:29:59.8Z","completed":"2025-11-25T09:30:00Z"}
}
