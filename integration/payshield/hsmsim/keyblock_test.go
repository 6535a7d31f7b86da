package hsmsim

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
)

type keyBlockVectors struct {
	Source string `json:"source"`
	Blocks []struct {
		What  string `json:"what"`
		Token string `json:"token"`
		KCV   string `json:"kcv"`
	} `json:"blocks"`
	A6 struct {
		What    string `json:"what"`
		Request string `json:"request"`
		Usage   string `json:"usage"`
		KCV     string `json:"kcv"`
	} `json:"a6"`
}

func loadKeyBlockVectors(t *testing.T) keyBlockVectors {
	t.Helper()
	b, err := os.ReadFile("testdata/keyblock_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v keyBlockVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTestKeyBlockLMKVectors: key blocks recorded from a payShield on the
// test key-block LMK verify under testKeyBlockLMK with the key variant
// binding, and carry keys with the check values the HSM answered.
func TestTestKeyBlockLMKVectors(t *testing.T) {
	v := loadKeyBlockVectors(t)
	lmk, _ := hex.DecodeString(testKeyBlockLMK)
	for _, b := range v.Blocks {
		h, id, raw, err := kbUnwrap(lmk, b.Token)
		if err != nil {
			t.Fatalf("%s: kbUnwrap: %v", b.What, err)
		}
		if got := kcv(raw); got != b.KCV || id != keyBlockLMKID {
			t.Errorf("%s: KCV %s LMK %s, want %s and %s (%s)", b.What, got, id, b.KCV, keyBlockLMKID, v.Source)
		}
		// Wrapping the key again with the same header gives a block that
		// verifies to the same key; altering a character breaks it.
		again := kbWrap(lmk, h, id, raw)
		if _, _, back, err := kbUnwrap(lmk, again); err != nil || !bytes.Equal(back, raw) {
			t.Errorf("%s: kbWrap does not round-trip: %v", b.What, err)
		}
		bad := []byte(b.Token)
		bad[len(bad)-12] ^= 1
		if _, _, _, err := kbUnwrap(lmk, string(bad)); err == nil {
			t.Errorf("%s: an altered block verifies", b.What)
		}
	}
}

// exchange sends one command to the simulator at addr (header "0000") and
// returns the response after the header.
func exchange(t *testing.T, c net.Conn, cmd string) string {
	t.Helper()
	msg := append(binary.BigEndian.AppendUint16(nil, uint16(4+len(cmd))), "0000"+cmd...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	var p [2]byte
	if _, err := io.ReadFull(c, p[:]); err != nil {
		t.Fatal(err)
	}
	r := make([]byte, binary.BigEndian.Uint16(p[:]))
	if _, err := io.ReadFull(c, r); err != nil {
		t.Fatal(err)
	}
	return string(r[4:])
}

// TestKeyBlockModeRecordedCommands: the simulator in key-block mode, over
// TCP, answers the recorded A6 as the payShield did (the same KCV, a key
// block of the same usage under LMK 01), gives the recorded check value of
// the recorded ZMK (BU), refuses a variant token and an altered block, and
// NC reports the key-block LMK's check value.
func TestKeyBlockModeRecordedCommands(t *testing.T) {
	v := loadKeyBlockVectors(t)
	s := New(Config{HeaderLen: 4, KeyBlock: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close(); <-done })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	r := exchange(t, c, v.A6.Request)
	if !strings.HasPrefix(r, "A700S") {
		t.Fatalf("A6 answered %.6s…, want A700 and a key block", r)
	}
	tok, rest, err := token(r[4:])
	if err != nil || rest != v.A6.KCV {
		t.Fatalf("A6 answered KCV %q (token err %v), want %s (%s)", rest, err, v.A6.KCV, v.A6.What)
	}
	if h, id, err := kbParse(tok); err != nil || h.Usage != v.A6.Usage || id != keyBlockLMKID {
		t.Errorf("A6 key block header %+v LMK %s (%v), want usage %s under LMK %s", h, id, err, v.A6.Usage, keyBlockLMKID)
	}
	if got := exchange(t, c, "BUFFF"+tok+";FFF;001"); got != "BV00"+v.A6.KCV {
		t.Errorf("BU of the imported key = %q, want BV00%s", got, v.A6.KCV)
	}
	zmk := v.Blocks[1]
	if got := exchange(t, c, "BUFFF"+zmk.Token+";FFF;001"); got != "BV00"+zmk.KCV {
		t.Errorf("BU of the recorded ZMK = %q, want BV00%s", got, zmk.KCV)
	}
	bad := []byte(zmk.Token)
	bad[20] ^= 1
	if got := exchange(t, c, "BUFFF"+string(bad)); got != "BV26" {
		t.Errorf("BU of an altered key block = %q, want BV26", got)
	}
	if got := exchange(t, c, "BU021U"+strings.Repeat("0", 32)); got != "BV15" && got != "BV26" && got != "BV04" {
		t.Errorf("BU of a variant token under the key-block LMK = %q, want an error", got)
	}
	if got := exchange(t, c, "BUFFF"+zmk.Token+"%00"); got != "BV15" {
		t.Errorf("BU naming LMK 00 = %q, want BV15", got)
	}
	// A ZMK key block as a translation's source, and a ZPK that may only
	// decipher as its destination: error 04; the ZPK both ways translates.
	const tail = "12" + "0123456789ABCDEF" + "01" + "01" + "400000123456"
	if got := exchange(t, c, "CC"+zmk.Token+tok+tail); got != "CD04" {
		t.Errorf("CC from a ZMK key block = %q, want CD04", got)
	}
	dec, _ := WrapUnderTestKeyBlockLMK("P0", 'D', mustHex(t, "89ABCDEF01234567FEDCBA9876543210"))
	if got := exchange(t, c, "CC"+tok+dec+tail); got != "CD04" {
		t.Errorf("CC to a decipher-only ZPK = %q, want CD04", got)
	}
	both, _ := WrapUnderTestKeyBlockLMK("P0", 'B', mustHex(t, "89ABCDEF01234567FEDCBA9876543210"))
	if got := exchange(t, c, "CC"+tok+both+tail); strings.HasPrefix(got, "CD04") || !strings.HasPrefix(got, "CD") {
		t.Errorf("CC between ZPK key blocks = %q, want no usage error", got)
	}
	lmk, _ := hex.DecodeString(testKeyBlockLMK)
	if got := exchange(t, c, "NC"); !strings.HasPrefix(got, "ND00"+strings.ToUpper(hex.EncodeToString(ecb(lmk, make([]byte, 8), false)))) {
		t.Errorf("NC = %q, want the key-block LMK's check value", got)
	}
}

func mustHex(t *testing.T, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
