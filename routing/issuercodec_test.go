package routing

import (
	"errors"
	"testing"
	"time"

	"pingate/iso8583"
)

func TestProcessingCodeRoundTrip(t *testing.T) {
	tests := []struct {
		give Operation
		want string
	}{
		{OpChange, iso8583.ProcPINChange},
		{OpReset, iso8583.ProcPINReset},
		{OpUnblock, iso8583.ProcPINUnblock},
		{"renew", ""},
	}
	for _, tt := range tests {
		got := ProcessingCode(tt.give)
		if got != tt.want {
			t.Errorf("ProcessingCode(%q) = %q, want %q", tt.give, got, tt.want)
		}
		op, ok := OperationOf(got)
		if ok != (tt.want != "") || (ok && op != tt.give) {
			t.Errorf("OperationOf(%q) = %q, %v, want %q, %v", got, op, ok, tt.give, tt.want != "")
		}
	}
}

// TestMatchKeyPairsRequestAndAnswer: a request and its answer share a
// match key; another message class, STAN, time, institution or terminal
// does not.
func TestMatchKeyPairsRequestAndAnswer(t *testing.T) {
	h := MessageHeader{STAN: "000001", Transmit: "1125120000", Institution: "999001", Terminal: "T1"}
	tests := []struct {
		name     string
		req, ans string
		ansH     MessageHeader
		want     bool
	}{
		{"0100/0110", "0100", "0110", h, true},
		{"0420/0430", "0420", "0430", h, true},
		{"0800/0810", "0800", "0810", h, true},
		{"0100/0430", "0100", "0430", h, false},
		{"other STAN", "0100", "0110", MessageHeader{STAN: "000002", Transmit: h.Transmit, Institution: h.Institution, Terminal: h.Terminal}, false},
		{"other time", "0100", "0110", MessageHeader{STAN: h.STAN, Transmit: "1125120001", Institution: h.Institution, Terminal: h.Terminal}, false},
		{"other terminal", "0100", "0110", MessageHeader{STAN: h.STAN, Transmit: h.Transmit, Institution: h.Institution, Terminal: "T2"}, false},
		{"malformed MTI", "0100", "01x0", h, false},
	}
	for _, tt := range tests {
		if got := matchKey(tt.req, h) == matchKey(tt.ans, tt.ansH); got != tt.want {
			t.Errorf("%s: keys equal = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestIssuerDialectRoundTrip: what the dialect packs, the issuer reads
// with its spec, and the dialect reads the issuer's answer back.
func TestIssuerDialectRoundTrip(t *testing.T) {
	d := IssuerDialect{}
	h := MessageHeader{STAN: "000042", Transmit: "1125120000", Institution: "999001", Receiver: "300001", Terminal: "T0000001",
		LocalTime: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	frame, err := d.PackReversal(h, &Reversal{ID: "r", Operation: OpChange, PAN: testPAN, STAN: "000041", Transmit: "1125115959", RRN: "000000000001", Merchant: "TEST MERCHANT  "})
	if err != nil {
		t.Fatal(err)
	}
	f, err := iso8583.Unpack(iso8583.IssuerSpec, frame)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Check(); err != nil {
		t.Errorf("the 0420 fails the issuer's field rules: %v", err)
	}
	mti, got, code, err := d.Unpack(reply(t, f, "00"))
	if err != nil || mti != iso8583.MTIReversalResponse || code != "00" || matchKey(iso8583.MTIReversalAdvice, h) != matchKey(mti, got) {
		t.Errorf("Unpack(0430) = %s %+v %s %v, want the 0430 matching the 0420", mti, got, code, err)
	}
	if _, err := d.PackReversal(h, &Reversal{ID: "r", STAN: "x"}); err == nil {
		t.Error("PackReversal(STAN x) = nil error, want one")
	}
	if _, _, _, err := d.Unpack([]byte{0x01}); !errors.Is(err, ErrIssuerMalformed) {
		t.Errorf("Unpack(garbage) = %v, want ErrIssuerMalformed", err)
	}
}
