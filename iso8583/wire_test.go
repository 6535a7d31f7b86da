package iso8583

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	moov "github.com/moov-io/iso8583"
)

// moovFlavour is the acquirer dialect with moov-io/iso8583's own ASCII
// encoding and length prefixes in place of pingate's: none of its String
// elements takes the codec's direct path, so every element goes through its
// moov field (wire.go).
func moovFlavour(t testing.TB) *moov.MessageSpec {
	t.Helper()
	b, err := os.ReadFile("dialects/acquirer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.NewReplacer("pingate.ASCII.LLL", "ASCII.LLL", "pingate.ASCII.LL", "ASCII.LL",
		"pingate.ASCII.ans", "ASCII", "pingate.ASCII.an", "ASCII", "pingate.ASCII.n", "ASCII").Replace(string(b))
	d, err := ParseDialect("moov-flavour", []byte(y), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	for id, e := range layoutOf(d.Spec()).elems {
		if e.text != nil {
			t.Fatalf("moov-flavour DE %d takes the direct path", id)
		}
	}
	return d.Spec()
}

// moovPack packs f through a moov Message, as Pack did before it walked the
// spec itself.
func moovPack(t *testing.T, spec *moov.MessageSpec, f *Fields) []byte {
	t.Helper()
	msg := moov.NewMessage(spec)
	for _, e := range stringElems {
		if v := *e.ptr(f); v != "" {
			if err := msg.Field(e.id, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, e := range binaryElems {
		if v := *e.ptr(f); v != nil {
			if err := msg.BinaryField(e.id, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if f.Additional != nil {
		if err := msg.Marshal(&additionalElem{f.Additional}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := msg.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCodecMatchesMoovMessage: Pack writes the bytes moov's Message writes
// for the same elements, and Unpack reads back what moov's Message reads, on
// both built-in dialects (direct path) and on moov-flavour (moov's fields).
func TestCodecMatchesMoovMessage(t *testing.T) {
	specs := []struct {
		name string
		spec *moov.MessageSpec
	}{{"acquirer", AcquirerSpec}, {"issuer", IssuerSpec}, {"moov-flavour", moovFlavour(t)}}
	for _, s := range specs {
		for _, g := range loadGolden(t) {
			f := g.fields(t)
			got, err := Pack(s.spec, f)
			if err != nil {
				t.Fatalf("%s %s: Pack: %v", s.name, g.Name, err)
			}
			if want := moovPack(t, s.spec, f); !bytes.Equal(got, want) {
				t.Errorf("%s %s: Pack differs from moov's Message.Pack", s.name, g.Name)
			}
			u, err := Unpack(s.spec, got)
			if err != nil {
				t.Fatalf("%s %s: Unpack: %v", s.name, g.Name, err)
			}
			msg := moov.NewMessage(s.spec)
			if err := msg.Unpack(got); err != nil {
				t.Fatal(err)
			}
			m, err := FieldsOf(msg)
			if err != nil {
				t.Fatal(err)
			}
			if id := firstDifferent(u, m); id != "" {
				t.Errorf("%s %s: Unpack reads DE %s differently from moov's Message.Unpack", s.name, g.Name, id)
			}
		}
	}
}

// TestUnpackRefusesTrailingBytes: a frame with bytes after its last element
// is a format error for the message as a whole, through every entry point,
// on both paths of the codec (moov itself ignores such bytes).
func TestUnpackRefusesTrailingBytes(t *testing.T) {
	specs := []struct {
		name     string
		spec     *moov.MessageSpec
		acquirer bool
	}{{"acquirer", AcquirerSpec, true}, {"issuer", IssuerSpec, false}, {"moov-flavour", moovFlavour(t), true}}
	for _, s := range specs {
		for _, g := range loadGolden(t) {
			frame, err := Pack(s.spec, g.fields(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Unpack(s.spec, frame); err != nil {
				t.Fatalf("%s %s: Unpack of the frame itself: %v", s.name, g.Name, err)
			}
			for _, extra := range []string{"0", "\x00", "0000"} {
				bad := append(bytes.Clone(frame), extra...)
				_, err1 := Unpack(s.spec, bad)
				_, err2 := UnpackMessage(s.spec, bad)
				err3 := UnpackSelected(s.spec, bad, Elements(39), new(Fields))
				for i, err := range []error{err1, err2, err3} {
					var fe *FieldError
					if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) || fe.Field != "" || fe.Problem != "length does not match its fields" {
						t.Errorf("%s %s + %d bytes: entry point %d error = %v, want the message's length refused", s.name, g.Name, len(extra), i+1, err)
					}
				}
			}
		}
	}
}

// TestUnpackRefusesElementOfAnotherLength: an element the codec reads through
// its moov field is packed again, and a value that packs to another length
// than it was read in (here a Numeric DE 4 with leading zeros in its LL
// length, which moov reads as 12 and writes back as "0212") is refused like
// trailing bytes: the frame is not what its elements say.
func TestUnpackRefusesElementOfAnotherLength(t *testing.T) {
	b, err := os.ReadFile("dialects/issuer.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "\nfields:\n", "\nfields:\n  \"4\":\n    type: Numeric\n    length: 12\n    description: amount\n    enc: ASCII\n    prefix: ASCII.LL\n", 1)
	d, err := ParseDialect("with-amount", []byte(y), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if layoutOf(d.Spec()).elems[4].sameLength {
		t.Fatal("a Numeric element counts as keeping its length")
	}
	// MTI 0110 (BCD), bitmap with DE 4 and DE 39, DE 4, DE 39 "00".
	head := []byte{0x01, 0x10, 0x10, 0, 0, 0, 0x02, 0, 0, 0}
	tests := []struct {
		de4  string
		want string // problem, "" for none
	}{
		{"0212", ""},
		{"040012", "length does not match its fields"},
	}
	for _, tt := range tests {
		frame := append(append(bytes.Clone(head), tt.de4...), "00"...)
		_, err := Unpack(d.Spec(), frame)
		var fe *FieldError
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Unpack(DE 4 %q) error = %v, want none", tt.de4, err)
		case tt.want != "" && (!errors.As(err, &fe) || fe.Problem != tt.want):
			t.Errorf("Unpack(DE 4 %q) error = %v, want %q", tt.de4, err, tt.want)
		}
	}
}

// TestUnpackSelected copies only the elements asked for, and still refuses a
// malformed element it does not copy.
func TestUnpackSelected(t *testing.T) {
	g, want := goldenByName(t, "0100-change-format0")
	for _, d := range dialects() {
		frame, _, _ := g.wire(t, d.acquirer)
		var got Fields
		if err := UnpackSelected(d.spec, frame, Elements(0, 11, 41), &got); err != nil {
			t.Fatalf("%s: UnpackSelected: %v", d.name, err)
		}
		if got.MTI != want.MTI || got.STAN != want.STAN || got.TerminalID != want.TerminalID {
			t.Errorf("%s: UnpackSelected did not copy DE 0, 11 and 41", d.name)
		}
		if got.PAN != "" || got.PINBlock != nil || got.ProcessingCode != "" || got.NewPINBlock != nil {
			t.Errorf("%s: UnpackSelected copied elements not asked for", d.name)
		}
	}
	frame, _, _ := g.wire(t, true)
	i := bytes.Index(frame, []byte(want.PAN))
	bad := bytes.Clone(frame)
	bad[i+3] = 'X'
	var fe *FieldError
	if err := UnpackSelected(AcquirerSpec, bad, Elements(0, 39), new(Fields)); !errors.As(err, &fe) || fe.Field != "2" {
		t.Errorf("UnpackSelected(letter in the PAN) error = %v, want field 2 refused", err)
	}
}
