package routing

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"pingate/iso8583"
)

// TestNewIssuerCodecs: each issuer gets the codec of the dialect it names,
// the default when it names none, and an unknown name is refused.
func TestNewIssuerCodecs(t *testing.T) {
	reg := iso8583.NewRegistry()
	if err := reg.Load("example-bank", filepath.Join("..", "docs", "dialects", "example-bank.yaml")); err != nil {
		t.Fatal(err)
	}
	codecs, err := NewIssuerCodecs([]IssuerConfig{{ID: "a"}, {ID: "b", Dialect: "example-bank"}, {ID: "c", Dialect: "acquirer"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	h := MessageHeader{STAN: "000123", Transmit: "0612143015", Institution: "999001", Receiver: "40000001",
		LocalTime: time.Date(2026, 6, 12, 14, 30, 15, 0, time.UTC)}
	bank, err := reg.Lookup("example-bank")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		issuer string
		want   *iso8583.Dialect
	}{
		{"a", iso8583.IssuerDialect},
		{"b", bank},
		{"c", iso8583.AcquirerDialect},
	}
	for _, tt := range tests {
		frame, err := codecs[tt.issuer].PackNetwork(h, iso8583.NMIEcho)
		if err != nil {
			t.Fatalf("issuer %s: PackNetwork: %v", tt.issuer, err)
		}
		for _, d := range []*iso8583.Dialect{iso8583.IssuerDialect, bank, iso8583.AcquirerDialect} {
			_, err := d.Unpack(frame)
			if ok := err == nil; ok != (d == tt.want) {
				t.Errorf("issuer %s: its 0800 unpacks in %s: %v, want %v", tt.issuer, d.Name(), ok, d == tt.want)
			}
		}
	}
	if _, err := NewIssuerCodecs([]IssuerConfig{{ID: "x", Dialect: "nope"}}, reg); !errors.Is(err, iso8583.ErrUnknownDialect) {
		t.Errorf("NewIssuerCodecs(unknown dialect) error = %v, want ErrUnknownDialect", err)
	}
}

// TestIssuerDialectUnpack: an issuer's 0110 gives its MTI, header and
// response code; a frame with bytes after its last element, or with a
// malformed element the links do not read (the PAN), is ErrIssuerMalformed.
func TestIssuerDialectUnpack(t *testing.T) {
	h := MessageHeader{STAN: "000123", Transmit: "1203061500", Institution: "999001", Receiver: "300001",
		Terminal: "ATM00042", LocalTime: time.Date(2026, 12, 3, 6, 15, 0, 0, time.UTC)}
	f := iso8583.Fields{MTI: iso8583.MTIAuthResponse, PAN: "6228481200000000017", ProcessingCode: iso8583.ProcPINChange,
		RRN: "416314000001", ResponseCode: iso8583.RCIncorrectPIN}
	header(&f, h)
	frame, err := iso8583.IssuerDialect.Pack(&f)
	if err != nil {
		t.Fatal(err)
	}
	mti, got, code, err := IssuerDialect{}.Unpack(frame)
	want := MessageHeader{STAN: h.STAN, Transmit: h.Transmit, Institution: h.Institution, Receiver: h.Receiver, Terminal: h.Terminal}
	if err != nil || mti != iso8583.MTIAuthResponse || got != want || code != iso8583.RCIncorrectPIN {
		t.Fatalf("Unpack(0110) = %s, %+v, %s, %v; want 0110, %+v, 55, nil", mti, got, code, err, want)
	}
	// The PAN is BCD after the MTI (2 bytes), the bitmap (8) and its length (1).
	badPAN := bytes.Clone(frame)
	badPAN[2+8+1] = 0xAF
	for name, bad := range map[string][]byte{"trailing byte": append(bytes.Clone(frame), 0), "PAN digit F": badPAN} {
		if _, _, _, err := (IssuerDialect{}).Unpack(bad); !errors.Is(err, ErrIssuerMalformed) {
			t.Errorf("Unpack(%s) error = %v, want ErrIssuerMalformed", name, err)
		}
	}
}
