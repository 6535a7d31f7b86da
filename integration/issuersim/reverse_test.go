package issuersim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// failingSink refuses events while err is set, as a journal on a failed disk
// would.
type failingSink struct {
	mu  sync.Mutex
	err error
	n   int
}

func (s *failingSink) Publish(context.Context, routing.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.n++
	return nil
}

func (s *failingSink) set(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// TestFlowReversesApprovalItCannotRecord: the issuer approves a PIN change,
// then the outcome cannot be recorded. The acquirer gets 91, and the issuer
// gets a reversal advice over the link that undoes the change: the old PIN
// works again, the new one does not.
func TestFlowReversesApprovalItCannotRecord(t *testing.T) {
	pop := Population{Seed: 11, BINs: []string{"622848"}, PerBIN: 1000}
	sim, addr := startTestSim(t, pop)
	ic := routing.IssuerConfig{ID: "ssbank", Institution: "300001", Hosts: []string{addr}, PINFormat: 4, Key: devkeys.IssuerZPK}
	links := startLinks(t, ic)
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	sink := &failingSink{}
	flow, err := routing.NewFlow(routing.Config{
		Institution: "999001",
		Acquirers: []routing.AcquirerConfig{{ID: "100001", Channel: routing.ChannelATM, Terminals: []string{"*"},
			Keys: map[int]string{1: devkeys.ATMZPK}, Formats: []int{0}}},
		Issuers: []routing.IssuerConfig{ic},
		Routes:  []routing.Route{{Prefix: "622848", Issuer: "ssbank"}},
	}, routing.Deps{
		HSM: pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil), Sink: sink, Issuers: links,
		Tokenizer: routing.NewTokenizer([]byte("0123456789abcdef0123456789abcdef")),
	})
	if err != nil {
		t.Fatal(err)
	}
	i := 5
	for !pop.Usable(i) {
		i++
	}
	card := pop.Card(i)
	stan := 0
	change := func(oldPIN, newPIN string) routing.Outcome {
		t.Helper()
		atm, err := devkeys.Key(devkeys.ATMZPK)
		if err != nil {
			t.Fatal(err)
		}
		enc := func(pin string) []byte {
			p, err := pinblock.NewSecretPIN(pin)
			if err != nil {
				t.Fatal(err)
			}
			b, err := pinblock.Encipher(pinblock.Format0, p, card.PAN, atm)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		stan++
		return flow.Handle(context.Background(), &routing.Request{
			Operation: routing.OpChange, Channel: routing.ChannelATM, Acquirer: "100001", Terminal: "ATM00001",
			STAN: fmt.Sprintf("%06d", stan), Transmit: time.Now().UTC().Format("0102150405"),
			Merchant: "PINGATE TEST   ", RRN: "000000000001",
			PAN: card.PAN, Format: 0, KeyIndex: 1, OldBlock: enc(oldPIN), NewBlock: enc(newPIN),
		})
	}

	sink.set(errors.New("journal: disk failed"))
	if out := change(card.PIN, "4826"); out.Code != iso8583.RCIssuerUnavailable || out.Reason != "journal_unavailable" {
		t.Fatalf("change with the journal down = %s %s, want 91 journal_unavailable", out.Code, out.Reason)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sim.Reversals.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no reversal advice reached the issuer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sink.set(nil)
	if out := change("4826", "5930"); out.Code != iso8583.RCIncorrectPIN {
		t.Errorf("change from the reversed new PIN = %s, want %s", out.Code, iso8583.RCIncorrectPIN)
	}
	if out := change(card.PIN, "5930"); out.Code != iso8583.RCApproved {
		t.Errorf("change from the card's PIN after the reversal = %s, want 00", out.Code)
	}
}
