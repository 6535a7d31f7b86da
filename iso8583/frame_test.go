package iso8583

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type writeCounter struct {
	bytes.Buffer
	calls int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.calls++
	return w.Buffer.Write(p)
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		framing Framing
		msg     string
		header  string
	}{
		{"binary2 short", Binary2, "0800", "\x00\x04"},
		{"binary2 300", Binary2, strings.Repeat("x", 300), "\x01\x2c"},
		{"ascii4 short", ASCII4, "0800", "0004"},
		{"ascii4 300", ASCII4, strings.Repeat("x", 300), "0300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w writeCounter
			if err := WriteFrame(&w, tt.framing, []byte(tt.msg)); err != nil {
				t.Fatalf("WriteFrame error: %v", err)
			}
			if w.calls != 1 {
				t.Errorf("WriteFrame made %d Write calls, want 1", w.calls)
			}
			if got := w.String()[:tt.framing.HeaderLen()]; got != tt.header {
				t.Errorf("header = %q, want %q", got, tt.header)
			}
			got, err := ReadFrame(bufio.NewReader(&w.Buffer), tt.framing, 0, nil)
			if err != nil {
				t.Fatalf("ReadFrame error: %v", err)
			}
			if string(got) != tt.msg {
				t.Errorf("ReadFrame = %d bytes, want %d", len(got), len(tt.msg))
			}
		})
	}
}

func TestReadFrameReusesBuffer(t *testing.T) {
	buf := make([]byte, 0, 64)
	got, err := ReadFrame(bufio.NewReader(strings.NewReader("\x00\x03abc")), Binary2, 0, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &buf[:1][0] {
		t.Error("ReadFrame did not read into buf although it fits")
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name    string
		framing Framing
		max     int
		give    string
		want    error
	}{
		{"empty stream", Binary2, 0, "", io.EOF},
		{"binary2 zero length", Binary2, 0, "\x00\x00", ErrBadFrame},
		{"ascii4 zero length", ASCII4, 0, "0000", ErrBadFrame},
		{"ascii4 letters", ASCII4, 0, "00a4abcd", ErrBadFrame},
		{"ascii4 sign", ASCII4, 0, "+004abcd", ErrBadFrame},
		{"ascii4 space", ASCII4, 0, " 004abcd", ErrBadFrame},
		{"binary2 over max", Binary2, 100, "\x00\x65", ErrFrameTooLarge},
		{"binary2 over default max", Binary2, 0, "\xff\xff", ErrFrameTooLarge},
		{"ascii4 over max", ASCII4, 100, "0101", ErrFrameTooLarge},
		{"binary2 half header", Binary2, 0, "\x00", io.ErrUnexpectedEOF},
		{"ascii4 half header", ASCII4, 0, "00", io.ErrUnexpectedEOF},
		{"truncated body", Binary2, 0, "\x00\x05abc", io.ErrUnexpectedEOF},
		{"header only", ASCII4, 0, "0005", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bufio.NewReader(strings.NewReader(tt.give)), tt.framing, tt.max, nil)
			if !errors.Is(err, tt.want) {
				t.Errorf("ReadFrame(%q) error = %v, want %v", tt.give, err, tt.want)
			}
		})
	}
}

func TestReadFrameAtMax(t *testing.T) {
	msg := strings.Repeat("y", 100)
	for _, f := range []Framing{Binary2, ASCII4} {
		var b bytes.Buffer
		if err := WriteFrame(&b, f, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFrame(bufio.NewReader(&b), f, 100, nil)
		if err != nil || len(got) != 100 {
			t.Errorf("ReadFrame(%s, max 100) of 100 bytes = %d bytes, %v; want 100, nil", f, len(got), err)
		}
	}
}

func TestWriteFrameErrors(t *testing.T) {
	tests := []struct {
		name    string
		framing Framing
		size    int
		want    error
	}{
		{"empty binary2", Binary2, 0, ErrBadFrame},
		{"empty ascii4", ASCII4, 0, ErrBadFrame},
		{"ascii4 10000", ASCII4, 10000, ErrFrameTooLarge},
		{"binary2 65536", Binary2, 65536, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w writeCounter
			err := WriteFrame(&w, tt.framing, make([]byte, tt.size))
			if !errors.Is(err, tt.want) {
				t.Errorf("WriteFrame(%d bytes) error = %v, want %v", tt.size, err, tt.want)
			}
			if w.calls != 0 {
				t.Errorf("WriteFrame wrote although it failed")
			}
		})
	}
}

func TestParseFraming(t *testing.T) {
	tests := []struct {
		give string
		want Framing
	}{
		{"", Binary2}, {"binary2", Binary2}, {"BINARY", Binary2}, {"ascii4", ASCII4}, {" ASCII ", ASCII4},
	}
	for _, tt := range tests {
		got, err := ParseFraming(tt.give)
		if err != nil || got != tt.want {
			t.Errorf("ParseFraming(%q) = %v, %v; want %v, nil", tt.give, got, err, tt.want)
		}
		if err == nil {
			if back, _ := ParseFraming(got.String()); back != got {
				t.Errorf("ParseFraming(%q.String()) = %v", got, back)
			}
		}
	}
	if _, err := ParseFraming("ebcdic"); err == nil {
		t.Error("ParseFraming(\"ebcdic\") error = nil, want an error")
	}
}
