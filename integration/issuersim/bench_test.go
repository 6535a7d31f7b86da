package issuersim

import (
	"testing"

	"pingate/integration/internal/cputime"
	"pingate/iso8583"
	"pingate/pinblock"
)

// BenchmarkRespond is the simulator's work per PIN change as the bench's
// gateway sends it (issuer dialect, ISO 9564-1 format 4 under the issuer
// zone key): unpack, decipher both PIN blocks, verify and change in the
// ledger, pack the answer. One card, changed A→B and back, so that every
// answer is an approval. The TCP read and write are not in it.
func BenchmarkRespond(b *testing.B) {
	zpk, pvk, err := DevelopmentKeys()
	if err != nil {
		b.Fatal(err)
	}
	pop := Population{Seed: 1, BINs: []string{"62284812"}, PerBIN: 1000}
	sim, err := New(Config{Population: pop, ZPK: zpk, PVK: pvk})
	if err != nil {
		b.Fatal(err)
	}
	card := pop.Card(5)
	next := "4826"
	if card.PIN == next {
		next = "5937"
	}
	frame := func(oldPIN, newPIN string) []byte {
		enc := func(pin string) []byte {
			p, err := pinblock.NewSecretPIN(pin)
			if err != nil {
				b.Fatal(err)
			}
			blk, err := pinblock.Encipher(pinblock.Format4, p, card.PAN, zpk)
			if err != nil {
				b.Fatal(err)
			}
			return blk
		}
		f := &iso8583.Fields{MTI: iso8583.MTIAuthRequest, PAN: card.PAN, ProcessingCode: iso8583.ProcPINChange,
			TransmissionTime: "1203120000", STAN: "000001", LocalTime: "120000", LocalDate: "1203", AcquirerID: "999001",
			RRN: "000000000001", TerminalID: "LT000001", CardAcceptorID: "PINGATE LOAD   ",
			PINBlock: enc(oldPIN), NewPINBlock: enc(newPIN),
			SecurityControl: iso8583.SecurityControl{Format: 4, KeyIndex: 1}.String()}
		out, err := iso8583.IssuerDialect.Pack(f)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	frames := [2][]byte{frame(card.PIN, next), frame(next, card.PIN)}
	check := func(i int) {
		frame, _ := sim.respond(frames[i%2])
		ans, err := iso8583.IssuerDialect.Unpack(frame)
		if err != nil || ans.ResponseCode != iso8583.RCApproved {
			b.Fatalf("change %d: answer %v, %v; want 00", i, ans, err)
		}
	}
	check(0)
	check(1)
	b.ReportAllocs()
	defer cputime.Measure(b)()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if answer, _ := sim.respond(frames[i%2]); answer == nil {
			b.Fatal("no answer")
		}
	}
}
