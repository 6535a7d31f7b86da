package routing

import (
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/specs"

	"pingate/iso8583"
)

// Benchmarks of the issuer link's codec, per PIN operation: the 0100 packed
// towards the issuer and its 0110 read back, beside a bare moov-io/iso8583
// baseline doing the same two operations on a Spec87ASCII message with the
// same elements through moov's untyped API (as moov's benchmarks_test.go
// does; Spec87ASCII has no DE 100, which the baseline leaves out). Read
// allocs/op and ns/op as ratios to the baseline.

func benchIssuerRequest() (MessageHeader, *IssuerRequest) {
	h := MessageHeader{STAN: "000123", Transmit: "1203061500", Institution: "999001", Receiver: "300001",
		Terminal: "ATM00042", LocalTime: time.Date(2026, 12, 3, 6, 15, 0, 0, time.UTC)}
	req := &IssuerRequest{Operation: OpChange, PAN: "6228481200000000017", RRN: "416314000001", Merchant: "BANK BRANCH 017",
		OldBlock: []byte{0x1b, 0x9c, 0x18, 0x45, 0xeb, 0x99, 0x3a, 0x7a, 1, 2, 3, 4, 5, 6, 7, 8},
		NewBlock: []byte{0x2b, 0x9c, 0x18, 0x45, 0xeb, 0x99, 0x3a, 0x7a, 1, 2, 3, 4, 5, 6, 7, 9}, Format: 4, KeyIndex: 1}
	return h, req
}

func benchIssuerAnswer(b *testing.B, h MessageHeader) []byte {
	f := iso8583.Fields{MTI: iso8583.MTIAuthResponse, PAN: "6228481200000000017", ProcessingCode: iso8583.ProcPINChange,
		RRN: "416314000001", ResponseCode: "00"}
	header(&f, h)
	frame, err := iso8583.IssuerDialect.Pack(&f)
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

func BenchmarkIssuerCodec(b *testing.B) {
	h, req := benchIssuerRequest()
	b.Run("baseline-moov-pack-request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := moov.NewMessage(specs.Spec87ASCII)
			m.MTI("0100")
			for _, e := range []struct {
				id int
				v  string
			}{{2, req.PAN}, {3, "700000"}, {7, h.Transmit}, {11, h.STAN}, {12, "061500"}, {13, "1203"},
				{32, h.Institution}, {37, req.RRN}, {41, h.Terminal}, {42, req.Merchant}, {52, "1B9C1845EB993A7A"},
				{53, "0401000000000000"}} {
				if err := m.Field(e.id, e.v); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := m.Pack(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pack-request", func(b *testing.B) {
		if _, err := (IssuerDialect{}).PackRequest(h, req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := (IssuerDialect{}).PackRequest(h, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	answer := benchIssuerAnswer(b, h)
	b.Run("baseline-moov-unpack-answer", func(b *testing.B) {
		m := moov.NewMessage(specs.Spec87ASCII)
		m.MTI("0110")
		for id, v := range map[int]string{2: req.PAN, 3: "700000", 7: h.Transmit, 11: h.STAN, 32: h.Institution,
			37: req.RRN, 39: "00", 41: h.Terminal} {
			if err := m.Field(id, v); err != nil {
				b.Fatal(err)
			}
		}
		packed, err := m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			m := moov.NewMessage(specs.Spec87ASCII)
			if err := m.Unpack(packed); err != nil {
				b.Fatal(err)
			}
			if _, err := m.GetString(39); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unpack-answer", func(b *testing.B) {
		mti, got, code, err := (IssuerDialect{}).Unpack(answer)
		if err != nil || mti != iso8583.MTIAuthResponse || got.STAN != h.STAN || code != "00" {
			b.Fatalf("Unpack(answer) = %s %+v %s %v", mti, got, code, err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := (IssuerDialect{}).Unpack(answer); err != nil {
				b.Fatal(err)
			}
		}
	})
}
