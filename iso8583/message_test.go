package iso8583

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// goldenByName returns the fields and acquirer/issuer frames of a golden message.
func goldenByName(t testing.TB, name string) (goldenMessage, *Fields) {
	t.Helper()
	for _, g := range loadGolden(t) {
		if g.Name == name {
			return g, g.fields(t)
		}
	}
	t.Fatalf("no golden message %s", name)
	return goldenMessage{}, nil
}

// secrets of the format 0 golden change request, which no error or dump may
// contain.
func goldenSecrets(f *Fields) []string {
	return []string{
		f.PAN,
		hex.EncodeToString(f.PINBlock), strings.ToUpper(hex.EncodeToString(f.PINBlock)),
		hex.EncodeToString(f.NewPINBlock), strings.ToUpper(hex.EncodeToString(f.NewPINBlock)),
	}
}

func TestUnpackErrorsDoNotEchoInput(t *testing.T) {
	g, f := goldenByName(t, "0100-change-format0")
	frame, _, _ := g.wire(t, true)
	pan := f.PAN
	// Corrupt the frame in ways that hit each layer of the decoder; the
	// error must name the field but never contain the PAN, the PIN blocks
	// or the bytes around the fault.
	tests := []struct {
		name      string
		mutate    func([]byte) []byte
		wantField string
	}{
		{"letter in PAN", func(b []byte) []byte {
			i := bytes.Index(b, []byte(pan))
			b[i+5] = 'X'
			return b
		}, "2"},
		{"PAN length not digits", func(b []byte) []byte {
			i := bytes.Index(b, []byte(pan))
			b[i-1] = '+'
			return b
		}, "2"},
		{"PIN block not hex", func(b []byte) []byte {
			i := bytes.Index(b, []byte("1B9C1845"))
			b[i] = 'G'
			return b
		}, "52"},
		{"PIN block 12 hex digits", func(b []byte) []byte {
			i := bytes.Index(b, []byte("161B9C1845"))
			b[i+1] = '2'
			return b
		}, "52"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-3] }, "125"},
		{"trailing bytes", func(b []byte) []byte { return append(b, "0000"...) }, ""},
		{"control character in terminal id", func(b []byte) []byte {
			i := bytes.Index(b, []byte("ATM00042"))
			b[i+3] = '\n'
			return b
		}, "41"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := tt.mutate(bytes.Clone(frame))
			_, err := Unpack(AcquirerSpec, bad)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
				t.Fatalf("Unpack error = %v, want a *FieldError wrapping ErrFormat", err)
			}
			if fe.Field != tt.wantField {
				t.Errorf("Unpack error field = %q, want %q (%v)", fe.Field, tt.wantField, err)
			}
			for _, s := range append(goldenSecrets(f), pan[:8], "4012", "G9C1") {
				if strings.Contains(err.Error(), s) {
					t.Errorf("Unpack error %q contains input data", err)
				}
			}
		})
	}
}

func TestUnpackIssuerBadBCD(t *testing.T) {
	g, _ := goldenByName(t, "0100-change-format0")
	frame, _, _ := g.wire(t, false)
	tests := []struct {
		name   string
		offset int // after MTI (2) and bitmap (16)
		value  byte
		field  string
	}{
		{"PAN length nibble A", 18, 0x1A, "2"},
		{"PAN digit F", 20, 0x4F, "2"},
		{"PAN pad nibble not zero", 19, 0x14, "2"},
		{"PIN block length 9", 18 + 1 + 7 + 3 + 5 + 3 + 3 + 2 + 4 + 12 + 8 + 15, 9, "52"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := bytes.Clone(frame)
			bad[tt.offset] = tt.value
			_, err := Unpack(IssuerSpec, bad)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("Unpack error = %v, want field %s", err, tt.field)
			}
		})
	}
}

func TestPackErrors(t *testing.T) {
	_, base := goldenByName(t, "0100-change-format0")
	tests := []struct {
		name   string
		mutate func(*Fields)
		field  string
	}{
		{"no MTI", func(f *Fields) { f.MTI = "" }, "0"},
		{"letters in PAN", func(f *Fields) { f.PAN = "40123456789O9" }, "2"},
		{"PAN of 20 digits", func(f *Fields) { f.PAN = "40123456789012345678" }, "2"},
		{"short STAN", func(f *Fields) { f.STAN = "123" }, "11"},
		{"PIN block of 12 bytes", func(f *Fields) { f.PINBlock = make([]byte, 12) }, "52"},
		{"new PIN block of 4 bytes", func(f *Fields) { f.NewPINBlock = make([]byte, 4) }, "125"},
		{"newline in teller id", func(f *Fields) { f.Additional = &AdditionalData{TellerID: "T1\n"} }, "48.01"},
		{"teller id too long", func(f *Fields) { f.Additional = &AdditionalData{TellerID: strings.Repeat("T", 17)} }, "48.01"},
	}
	for _, d := range dialects() {
		for _, tt := range tests {
			t.Run(d.name+"/"+tt.name, func(t *testing.T) {
				f := *base
				tt.mutate(&f)
				_, err := Pack(d.spec, &f)
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrFormat) {
					t.Errorf("Pack error = %v, want a *FieldError for field %s", err, tt.field)
				}
			})
		}
	}
}

func TestPackEmptyAdditionalIsAbsent(t *testing.T) {
	_, f := goldenByName(t, "0100-change-format0")
	want, err := Pack(AcquirerSpec, f)
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.Additional = &AdditionalData{}
	got, err := Pack(AcquirerSpec, &g)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("Pack with empty DE 48 differs from Pack without it (err %v)", err)
	}
}

func TestCheck(t *testing.T) {
	_, change := goldenByName(t, "0100-change-format0")
	_, reset := goldenByName(t, "0100-reset-format4")
	_, signOn := goldenByName(t, "0800-sign-on")
	tests := []struct {
		name   string
		base   *Fields
		mutate func(*Fields)
		field  string
	}{
		{"unknown MTI", change, func(f *Fields) { f.MTI = "0200" }, "0"},
		{"unknown processing code", change, func(f *Fields) { f.ProcessingCode = "000000" }, "3"},
		{"no processing code", change, func(f *Fields) { f.ProcessingCode = "" }, "3"},
		{"change without new PIN", change, func(f *Fields) { f.NewPINBlock = nil }, "125"},
		{"change without STAN", change, func(f *Fields) { f.STAN = "" }, "11"},
		{"response code in request", change, func(f *Fields) { f.ResponseCode = "00" }, "39"},
		{"reset with current PIN", reset, func(f *Fields) { f.PINBlock = make([]byte, 16) }, "52"},
		{"reset without identity check", reset, func(f *Fields) { f.Additional = &AdditionalData{TellerID: "T1"} }, "48.02"},
		{"reset without DE 48", reset, func(f *Fields) { f.Additional = nil }, "48"},
		{"response with PIN block", change, func(f *Fields) { f.MTI = MTIAuthResponse; f.ResponseCode = "00" }, "52"},
		{"format 4 with 8-byte blocks", change, func(f *Fields) { f.SecurityControl = "0401000000000000" }, "52"},
		{"format 2 in DE 53", change, func(f *Fields) { f.SecurityControl = "0201000000000000" }, "53"},
		{"DE 53 tail not zero", change, func(f *Fields) { f.SecurityControl = "0001000000000001" }, "53"},
		{"month 13", change, func(f *Fields) { f.TransmissionTime = "1312143015" }, "7"},
		{"hour 24", change, func(f *Fields) { f.LocalTime = "240000" }, "12"},
		{"February 30", change, func(f *Fields) { f.LocalDate = "0230" }, "13"},
		{"sign-on without NMI", signOn, func(f *Fields) { f.NetworkCode = "" }, "70"},
		{"sign-on with unknown NMI", signOn, func(f *Fields) { f.NetworkCode = "999" }, "70"},
		{"sign-on without acquirer", signOn, func(f *Fields) { f.AcquirerID = "" }, "32"},
		{"key change without key", signOn, func(f *Fields) { f.NetworkCode = NMIKeyChange; f.AcquirerID = "" }, "123"},
		{"key change bad KCV", signOn, func(f *Fields) {
			f.NetworkCode = NMIKeyChange
			f.KeyExchange = strings.Repeat("A", 32) + "/XYZ123"
		}, "123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := *tt.base
			tt.mutate(&f)
			err := f.Check()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("Check() = %v, want a *FieldError for field %s", err, tt.field)
			}
		})
	}
}

func TestElements(t *testing.T) {
	sc, err := ParseSecurityControl("0412000000000000")
	if err != nil || sc != (SecurityControl{Format: 4, KeyIndex: 12}) {
		t.Errorf("ParseSecurityControl = %+v, %v; want format 4 index 12", sc, err)
	}
	if got := sc.String(); got != "0412000000000000" {
		t.Errorf("SecurityControl.String() = %q", got)
	}
	if got := (SecurityControl{Format: 2}).String(); got != "" {
		t.Errorf("SecurityControl{Format: 2}.String() = %q, want \"\"", got)
	}

	od := OriginalData{MTI: "0100", STAN: "000001", Transmission: "0612143015", Acquirer: "100001"}
	s, err := od.Encode()
	if err != nil || s != "0100"+"000001"+"0612143015"+"00000100001"+"00000000000" {
		t.Errorf("OriginalData.Encode() = %q, %v", s, err)
	}
	back, err := ParseOriginalData(s)
	if err != nil || !back.SameAcquirer("100001") || back.SameAcquirer("100002") || back.STAN != "000001" {
		t.Errorf("ParseOriginalData(%q) = %+v, %v", s, back, err)
	}
	if _, err := (OriginalData{MTI: "01", STAN: "000001", Transmission: "0612143015"}).Encode(); err == nil {
		t.Error("OriginalData with a 2-digit MTI encoded without error")
	}

	ke, err := ParseKeyExchange("f039121bec83d26b169bdcd5b22aaf8f/cb9dea")
	if err != nil || ke.KCV != "CB9DEA" {
		t.Fatalf("ParseKeyExchange = %v, %v", ke, err)
	}
	if enc, _ := ke.Encode(); enc != "F039121BEC83D26B169BDCD5B22AAF8F/CB9DEA" {
		t.Errorf("KeyExchange.Encode() = %q", enc)
	}
	for _, out := range []string{fmt.Sprint(ke), fmt.Sprintf("%+v", ke), fmt.Sprintf("%#v", ke)} {
		if strings.Contains(strings.ToUpper(out), "F039121B") {
			t.Errorf("KeyExchange printed its enciphered key: %s", out)
		}
	}
	for _, bad := range []string{"", "F039/CB9DEA", "F039121BEC83D26B169BDCD5B22AAF8F", "F039121BEC83D26B169BDCD5B22AAF8G/CB9DEA"} {
		if _, err := ParseKeyExchange(bad); err == nil || strings.Contains(err.Error(), "F039") {
			t.Errorf("ParseKeyExchange(bad) error = %v, want one that does not echo the input", err)
		}
	}
}

func TestMaskPAN(t *testing.T) {
	tests := []struct{ give, want string }{
		{"4012345678909", "401234***8909"},
		{"4111111111111111", "411111******1111"},
		{"4321987654321098765", "432198*********8765"},
		{"123456789012", "********9012"},
		{"12345", "*2345"},
		{"1234", "****"},
		{"", ""},
		{"4111\n111111111111", "4111?1*******1111"},
	}
	for _, tt := range tests {
		if got := MaskPAN(tt.give); got != tt.want {
			t.Errorf("MaskPAN(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestRedactAndFieldsString(t *testing.T) {
	for _, name := range []string{"0100-change-format0", "0100-reset-format4", "0800-key-change"} {
		g, f := goldenByName(t, name)
		for _, d := range dialects() {
			frame, _, _ := g.wire(t, d.acquirer)
			msg, err := UnpackMessage(d.spec, frame)
			if err != nil {
				t.Fatal(err)
			}
			outs := map[string]string{
				"Redact":   Redact(msg),
				"String":   f.String(),
				"%v":       fmt.Sprintf("%v", f),
				"%+v":      fmt.Sprintf("%+v", *f),
				"%#v":      fmt.Sprintf("%#v", f),
				"%x":       fmt.Sprintf("%x", f),
				"%s value": fmt.Sprintf("%s", *f),
			}
			var sb strings.Builder
			slog.New(slog.NewTextHandler(&sb, nil)).Info("msg", "fields", f)
			outs["slog"] = sb.String()
			secrets := append(goldenSecrets(f), "F039121BEC83D26B")
			for how, out := range outs {
				for _, s := range secrets {
					if s != "" && strings.Contains(out, s) {
						t.Errorf("%s of %s shows a secret", how, name)
					}
				}
			}
			if r := Redact(msg); r != f.String() {
				t.Errorf("%s: Redact = %s, want the same as Fields.String = %s", name, r, f.String())
			}
		}
	}
}

func TestResponseText(t *testing.T) {
	for _, c := range []string{RCApproved, RCNoSuchCard, RCFormatError, RCIncorrectPIN, RCNotPermittedCard,
		RCNotPermittedTerm, RCExceedsLimit, RCExceedsFrequency, RCPINTriesExceeded, RCIssuerUnavailable,
		RCDuplicate, RCSystemMalfunction, RCNewPINRejected} {
		if ResponseText(c) == ResponseText("ZZ") {
			t.Errorf("ResponseText(%q) has no description", c)
		}
	}
	if got := ResponseText(RCIncorrectPIN); got != "incorrect PIN" {
		t.Errorf("ResponseText(55) = %q", got)
	}
}

func TestFieldsClear(t *testing.T) {
	_, f := goldenByName(t, "0100-change-format0")
	old, nw := f.PINBlock, f.NewPINBlock
	f.Clear()
	if f.PINBlock != nil || f.NewPINBlock != nil || !bytes.Equal(old, make([]byte, 8)) || !bytes.Equal(nw, make([]byte, 8)) {
		t.Error("Clear did not zero and drop the PIN blocks")
	}
}

func ExampleRedact() {
	f := &Fields{
		MTI: MTIAuthRequest, PAN: "4111111111111111", ProcessingCode: ProcPINChange,
		STAN: "000002", TerminalID: "ATM00042", CardAcceptorID: "BANK BRANCH 017",
		PINBlock:        []byte{0xA9, 0x12, 0x15, 0x03, 0x91, 0xAB, 0x65, 0xA6, 0x7E, 0x52, 0x88, 0x3D, 0x81, 0xCE, 0x2D, 0x15},
		SecurityControl: SecurityControl{Format: 4, KeyIndex: 2}.String(),
		NewPINBlock:     []byte{0x52, 0xA0, 0x05, 0x03, 0xBD, 0x34, 0xBA, 0x13, 0x83, 0xF6, 0xA7, 0xEE, 0x9F, 0xE2, 0x54, 0x7F},
	}
	frame, err := Pack(AcquirerSpec, f)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := UnpackMessage(AcquirerSpec, frame)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(Redact(msg))
	fmt.Println(f)
	// Output:
	// 0100 2=411111******1111 3=700000 11=000002 41=ATM00042 42="BANK BRANCH 017" 52=[redacted] 53=0402000000000000 125=[redacted]
	// 0100 2=411111******1111 3=700000 11=000002 41=ATM00042 42="BANK BRANCH 017" 52=[redacted] 53=0402000000000000 125=[redacted]
}
