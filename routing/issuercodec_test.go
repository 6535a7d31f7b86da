package routing

import (
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
