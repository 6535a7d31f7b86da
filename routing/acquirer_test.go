package routing

import (
	"context"
	"testing"

	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

func approveAll() IssuerSender {
	return issuerFunc(func(context.Context, string, *IssuerRequest) (string, error) { return iso8583.RCApproved, nil })
}

func changeFrame(t testing.TB, stan string) []byte {
	k, _ := devkeys.Key(devkeys.ATMZPK)
	pin := func(s string) []byte {
		p, _ := pinblock.NewSecretPIN(s)
		b, err := pinblock.Encipher(pinblock.Format0, p, testPAN, k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := iso8583.Pack(iso8583.AcquirerSpec, &iso8583.Fields{
		MTI: iso8583.MTIAuthRequest, PAN: testPAN, ProcessingCode: iso8583.ProcPINChange, TransmissionTime: "1125120000",
		STAN: stan, LocalTime: "120000", LocalDate: "1125", AcquirerID: "100001", RRN: "000000000001",
		TerminalID: "ATM00001", CardAcceptorID: "PINGATE TEST   ", PINBlock: pin("4826"), NewPINBlock: pin("7391"),
		SecurityControl: iso8583.SecurityControl{Format: 0, KeyIndex: 1}.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandleFrameAnswersEveryMessage(t *testing.T) {
	f := testFlow(t, approveAll(), &memSink{}, nil)
	front := NewAcquirerFront(f, nil)
	tests := []struct {
		name      string
		give      []byte
		wantMTI   string
		wantCode  string
		wantClose bool
	}{
		{"PIN change", changeFrame(t, "000001"), "0110", "00", false},
		{"garbage", []byte("0100GARBAGE"), "0110", "30", false},
		{"unreadable MTI", []byte{0xFF, 0x00, 0x13}, "0110", "30", false},
		{"empty", nil, "0110", "30", false},
	}
	for _, tt := range tests {
		resp, closeAfter := front.HandleFrame(context.Background(), &Session{}, tt.give)
		got, err := iso8583.Unpack(iso8583.AcquirerSpec, resp)
		if err != nil {
			t.Fatalf("%s: answer does not unpack: %v", tt.name, err)
		}
		if got.MTI != tt.wantMTI || got.ResponseCode != tt.wantCode || closeAfter != tt.wantClose {
			t.Errorf("%s: HandleFrame() = %s/%s close=%v, want %s/%s close=%v", tt.name, got.MTI, got.ResponseCode, closeAfter, tt.wantMTI, tt.wantCode, tt.wantClose)
		}
		if len(got.PINBlock) != 0 || len(got.NewPINBlock) != 0 {
			t.Errorf("%s: the answer carries a PIN block", tt.name)
		}
	}
}

// FuzzHandleFrame: whatever arrives, the front end answers with a message
// that unpacks, and never panics.
func FuzzHandleFrame(f *testing.F) {
	f.Add(changeFrame(f, "000001"))
	f.Add([]byte("0800"))
	f.Add([]byte("0100GARBAGE"))
	f.Add([]byte{})
	flow := testFlow(&testing.T{}, approveAll(), &memSink{}, nil)
	front := NewAcquirerFront(flow, nil)
	f.Fuzz(func(t *testing.T, frame []byte) {
		resp, _ := front.HandleFrame(context.Background(), &Session{}, frame)
		if resp == nil {
			t.Fatal("no answer")
		}
		if _, err := iso8583.Unpack(iso8583.AcquirerSpec, resp); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
	})
}
