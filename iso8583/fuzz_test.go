package iso8583

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	moov "github.com/moov-io/iso8583"
)

// addGoldenSeeds seeds a fuzzer with every golden message of one dialect.
func addGoldenSeeds(f *testing.F, acquirer bool) {
	for _, g := range loadGolden(f) {
		frame, _, _ := g.wire(f, acquirer)
		f.Add(frame)
	}
	f.Add([]byte{})
	f.Add([]byte("0800"))
}

// roundTrip: whatever Unpack accepts must Pack again, unpack to the same
// Fields, and pack to the same bytes. Failures name no field values.
func roundTrip(t *testing.T, spec *moov.MessageSpec, data []byte) {
	f1, err := Unpack(spec, data)
	if err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("Unpack error %T is not a *FieldError", err)
		}
		return
	}
	_ = f1.String()
	_ = f1.Check()
	p1, err := Pack(spec, f1)
	if err != nil {
		t.Fatalf("Pack of an unpacked message failed: %v", err)
	}
	f2, err := Unpack(spec, p1)
	if err != nil {
		t.Fatalf("Unpack of a repacked message failed: %v", err)
	}
	if !reflect.DeepEqual(f1, f2) {
		t.Fatalf("unpack, pack, unpack changed the fields")
	}
	p2, err := Pack(spec, f2)
	if err != nil || !bytes.Equal(p1, p2) {
		t.Fatalf("pack is not stable (err %v)", err)
	}
}

func FuzzAcquirerRoundTrip(f *testing.F) {
	addGoldenSeeds(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			t.Skip()
		}
		roundTrip(t, AcquirerSpec, data)
		// What a format-error answer echoes packs again.
		r := UnpackReadable(AcquirerSpec, data)
		if len(r.PINBlock) != 0 || len(r.NewPINBlock) != 0 || r.KeyExchange != "" {
			t.Fatal("UnpackReadable returned a PIN block or DE 123")
		}
		if r.MTI != "" {
			if _, err := Pack(AcquirerSpec, r); err != nil {
				t.Fatalf("readable elements do not pack: %v", err)
			}
		}
	})
}

func FuzzIssuerRoundTrip(f *testing.F) {
	addGoldenSeeds(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			t.Skip()
		}
		roundTrip(t, IssuerSpec, data)
	})
}

// FuzzReadFrame: the frame reader never panics, never returns more than max
// bytes, and every frame it returns re-frames to the bytes it consumed.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("\x00\x04abcd"), false)
	f.Add([]byte("0004abcd0002xy"), true)
	f.Add([]byte("\x00\x00"), false)
	f.Add([]byte("00a1"), true)
	f.Add([]byte("\xff\xff"), false)
	f.Fuzz(func(t *testing.T, data []byte, ascii bool) {
		fr := Binary2
		if ascii {
			fr = ASCII4
		}
		const max = 512
		r := bufio.NewReader(bytes.NewReader(data))
		var rebuilt bytes.Buffer
		for {
			msg, err := ReadFrame(r, fr, max, nil)
			if err != nil {
				if errors.Is(err, io.EOF) && rebuilt.Len() != len(data) {
					t.Fatalf("clean EOF after %d of %d bytes", rebuilt.Len(), len(data))
				}
				return
			}
			if len(msg) == 0 || len(msg) > max {
				t.Fatalf("ReadFrame returned %d bytes (max %d)", len(msg), max)
			}
			if err := WriteFrame(&rebuilt, fr, msg); err != nil {
				t.Fatalf("WriteFrame of a read frame: %v", err)
			}
			if !bytes.HasPrefix(data, rebuilt.Bytes()) {
				t.Fatalf("re-framed bytes differ from the input")
			}
		}
	})
}
