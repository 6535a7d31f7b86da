package main

import (
	"bytes"
	"testing"

	"pingate/iso8583"
)

// TestFormatErrorEchoesReadableFieldsOverTCP: a request that does not
// unpack is answered 30 with every element before the one that could not be
// read, so that a switch with many requests in flight can match it; an
// unreadable MTI gets an 0110 30 with nothing else. The connection stays
// open.
func TestFormatErrorEchoesReadableFieldsOverTCP(t *testing.T) {
	g := opsGateway(t, nil)
	golden := goldenNamed(t, docGolden(t), "0100-change-format0")
	// DE 52 announced as 15 hex digits: not an 8- or 16-byte block.
	bad := bytes.Replace(golden, []byte("BANK BRANCH 01716"), []byte("BANK BRANCH 01715"), 1)
	if bytes.Equal(bad, golden) {
		t.Fatal("the golden 0100-change-format0 no longer has DE 42 followed by DE 52 of 16 digits")
	}
	c := dialRaw(t, g.AcquirerAddr())
	ans := c.exchange("0100 with a bad DE 52", bad)
	want := iso8583.Fields{MTI: "0110", PAN: "4012345678909", ProcessingCode: "700000", TransmissionTime: "0612143015",
		STAN: "000001", LocalTime: "163015", LocalDate: "0612", AcquirerID: "100001", RRN: "416314000001",
		ResponseCode: "30", TerminalID: "ATM00042", CardAcceptorID: "BANK BRANCH 017"}
	if ans.MTI != want.MTI || ans.PAN != want.PAN || ans.ProcessingCode != want.ProcessingCode ||
		ans.TransmissionTime != want.TransmissionTime || ans.STAN != want.STAN || ans.LocalTime != want.LocalTime ||
		ans.LocalDate != want.LocalDate || ans.AcquirerID != want.AcquirerID || ans.RRN != want.RRN ||
		ans.ResponseCode != want.ResponseCode || ans.TerminalID != want.TerminalID || ans.CardAcceptorID != want.CardAcceptorID {
		t.Errorf("answer to a 0100 with a bad DE 52 = %v, want %v", ans, &want)
	}
	if len(ans.PINBlock) != 0 || len(ans.NewPINBlock) != 0 || ans.SecurityControl != "" {
		t.Errorf("format error answer carries DE 52, 53 or 125: %v", ans)
	}

	// DE 11 and DE 7 readable, DE 32 not: a sign-on whose DE 32 length is
	// not digits.
	signOn := goldenNamed(t, docGolden(t), "0800-sign-on")
	bad = bytes.Replace(signOn, []byte("06100001"), []byte("x6100001"), 1)
	ans = c.exchange("sign-on with a bad DE 32", bad)
	if ans.MTI != "0810" || ans.ResponseCode != "30" || ans.STAN != "000101" || ans.TransmissionTime != "0612140000" || ans.AcquirerID != "" {
		t.Errorf("answer to a sign-on with a bad DE 32 = %v, want 0810 30 with DE 7 0612140000 and DE 11 000101", ans)
	}

	ans = c.exchange("unreadable MTI", []byte("ABCD0000"))
	if ans.MTI != "0110" || ans.ResponseCode != "30" || ans.STAN != "" {
		t.Errorf("answer to an unreadable MTI = %v, want 0110 30 alone", ans)
	}
	if ans := c.exchange("echo", goldenNamed(t, docGolden(t), "0800-echo")); ans.ResponseCode != "00" {
		t.Errorf("echo after format errors = %s, want 00 on the same connection", ans.ResponseCode)
	}
}
