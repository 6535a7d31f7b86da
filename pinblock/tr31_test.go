package pinblock

import (
	"bytes"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

type tr31Vectors struct {
	Unwrap []struct {
		Name     string          `json:"name"`
		Source   string          `json:"source"`
		KBPKAlg  Algorithm       `json:"kbpk_alg"`
		KBPK     string          `json:"kbpk"`
		Block    string          `json:"block"`
		KeyAlg   Algorithm       `json:"key_alg"`
		Key      string          `json:"key"`
		KCV      string          `json:"kcv"`
		Usage    Usage           `json:"usage"`
		Optional []OptionalBlock `json:"optional"`
	} `json:"unwrap"`
	Wrap []struct {
		Name      string `json:"name"`
		Source    string `json:"source"`
		KBPK      string `json:"kbpk"`
		Key       string `json:"key"`
		MaskedLen int    `json:"masked_len"`
		Padding   string `json:"padding"`
		Block     string `json:"block"`
	} `json:"wrap"`
}

// loadTR31Vectors reads testdata/tr31-vectors.json; every entry must name
// its source.
func loadTR31Vectors(t testing.TB) tr31Vectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/tr31-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v tr31Vectors
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode tr31-vectors.json: %v", err)
	}
	if len(v.Unwrap) == 0 || len(v.Wrap) == 0 {
		t.Fatal("tr31-vectors.json: no vectors")
	}
	for _, e := range v.Unwrap {
		if e.Source == "" {
			t.Fatalf("vector %q has no source", e.Name)
		}
	}
	for _, e := range v.Wrap {
		if e.Source == "" {
			t.Fatalf("vector %q has no source", e.Name)
		}
	}
	return v
}

func tr31Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("test vector is not hex: %v", err)
	}
	return b
}

func tr31KBPK(t testing.TB, alg Algorithm, hexKey string) Key {
	t.Helper()
	k, err := ParseHexKey("kbpk", UsageZMK, alg, 1, hexKey)
	if err != nil {
		t.Fatalf("KBPK: %v", err)
	}
	return k
}

func TestUnwrapKeyBlockVectors(t *testing.T) {
	v := loadTR31Vectors(t)
	for _, tt := range v.Unwrap {
		t.Run(tt.Name, func(t *testing.T) {
			kbpk := tr31KBPK(t, tt.KBPKAlg, tt.KBPK)
			h, raw, err := unwrapKeyBlock(kbpk, tt.Block)
			if err != nil {
				t.Fatalf("unwrapKeyBlock() error = %v", err)
			}
			if !bytes.Equal(raw, tr31Hex(t, tt.Key)) {
				t.Fatal("unwrapKeyBlock() returned a key other than the published one")
			}
			if h.Length != len(tt.Block) || h.Version != tt.Block[0] || h.KeyUsage != tt.Block[5:7] {
				t.Errorf("header = %v, want the fields of %s", h, tt.Block[:16])
			}
			if !reflect.DeepEqual(h.Optional, tt.Optional) {
				t.Errorf("optional blocks = %v, want %v", h.Optional, tt.Optional)
			}
			if tt.Usage == "" {
				if _, _, err := UnwrapKeyBlock(kbpk, tt.Block, UnwrapOptions{ID: "k", Version: 1}); !errors.Is(err, ErrKeyUsage) {
					t.Errorf("UnwrapKeyBlock(usage %s) error = %v, want ErrKeyUsage", h.KeyUsage, err)
				}
				if tt.KCV != "" {
					k, err := NewKey("k", UsageZMK, tt.KeyAlg, 1, raw)
					if err != nil {
						t.Fatal(err)
					}
					if err := k.CheckKCV(tt.KCV); err != nil {
						t.Errorf("KCV of unwrapped key: %v", err)
					}
				}
				return
			}
			k, _, err := UnwrapKeyBlock(kbpk, tt.Block, UnwrapOptions{ID: "k", Version: 3})
			if err != nil {
				t.Fatalf("UnwrapKeyBlock() error = %v", err)
			}
			if k.Usage() != tt.Usage || k.Algorithm() != tt.KeyAlg || k.Version() != 3 || k.ID() != "k" {
				t.Errorf("UnwrapKeyBlock() = %v %s, want usage %s alg %s", k, k.Algorithm(), tt.Usage, tt.KeyAlg)
			}
			if tt.KCV != "" {
				if err := k.CheckKCV(tt.KCV); err != nil {
					t.Errorf("KCV: %v", err)
				}
			}
		})
	}
}

func TestWrapKeyBlockVectors(t *testing.T) {
	v := loadTR31Vectors(t)
	for _, tt := range v.Wrap {
		t.Run(tt.Name, func(t *testing.T) {
			kbpk := tr31KBPK(t, AES, tt.KBPK)
			h, err := ParseKeyBlockHeader(tt.Block)
			if err != nil {
				t.Fatal(err)
			}
			got, err := wrapKeyBlock(kbpk, h, tr31Hex(t, tt.Key), tt.MaskedLen, bytes.NewReader(tr31Hex(t, tt.Padding)))
			if err != nil {
				t.Fatalf("wrapKeyBlock() error = %v", err)
			}
			if got != tt.Block {
				t.Errorf("wrapKeyBlock() = %s\nwant               %s", got, tt.Block)
			}
			_, raw, err := unwrapKeyBlock(kbpk, tt.Block)
			if err != nil {
				t.Fatalf("unwrapKeyBlock(published) error = %v", err)
			}
			if !bytes.Equal(raw, tr31Hex(t, tt.Key)) {
				t.Error("unwrapKeyBlock(published) returned a key other than the published one")
			}
		})
	}
}

func TestWrapKeyBlockRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		kbpkAlg    Algorithm
		kbpkHex    string
		usage      Usage
		keyAlg     Algorithm
		keyHex     string
		wantPrefix string
	}{
		{"B 2-key, ZPK", TDES, "0123456789ABCDEFFEDCBA9876543210", UsageZPK, TDES, "1111111111111111222222222222222A", "B0080P0TB00E0000"},
		{"B 3-key, 3-key ZMK", TDES, "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", UsageZMK, TDES, "1111111111111111222222222222222A3333333333333333", "B0096K0TB00E0000"},
		{"B 3-key, 2-key TAK masked to 24", TDES, "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", UsageTAK, TDES, "1111111111111111222222222222222A", "B0096M3TC00E0000"},
		{"D 128, AES ZPK", AES, "000102030405060708090A0B0C0D0E0F", UsageZPK, AES, "00112233445566778899AABBCCDDEEFF", "D0112P0AB00E0000"},
		{"D 256, AES-256 PVK", AES, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", UsagePVK, AES, "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF", "D0144V0AC00E0000"},
		{"D 256, TDES TPK", AES, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", UsageTPK, TDES, "1111111111111111222222222222222A", "D0144P0TB00E0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kbpk := tr31KBPK(t, tt.kbpkAlg, tt.kbpkHex)
			k, err := ParseHexKey("x", tt.usage, tt.keyAlg, 2, tt.keyHex)
			if err != nil {
				t.Fatal(err)
			}
			h, err := NewKeyBlockHeader(k, kbpk)
			if err != nil {
				t.Fatal(err)
			}
			h.Optional = []OptionalBlock{{ID: "01", Data: "pingate test"}}
			block, err := WrapKeyBlock(kbpk, h, k)
			if err != nil {
				t.Fatalf("WrapKeyBlock() error = %v", err)
			}
			got, gh, err := UnwrapKeyBlock(kbpk, block, UnwrapOptions{ID: "x", Version: 2, Usage: tt.usage})
			if err != nil {
				t.Fatalf("UnwrapKeyBlock(WrapKeyBlock()) error = %v", err)
			}
			if got.KCV() != k.KCV() || got.Usage() != tt.usage || got.Algorithm() != tt.keyAlg {
				t.Errorf("round trip = %v, want %v", got, k)
			}
			if !reflect.DeepEqual(gh.Optional, h.Optional) {
				t.Errorf("optional blocks = %v, want %v", gh.Optional, h.Optional)
			}
			// The header's length field counts the optional blocks too;
			// compare the fixed part with the optional block count masked.
			want := tt.wantPrefix
			if gh.KeyUsage != want[5:7] || gh.Algorithm != want[7] || gh.ModeOfUse != want[8] || gh.Version != want[0] {
				t.Errorf("header = %v, want fields of %s", gh, want)
			}
			// Two wraps of one key differ: the padding is random.
			again, err := WrapKeyBlock(kbpk, h, k)
			if err != nil {
				t.Fatal(err)
			}
			if again == block {
				t.Error("two wraps produced the same block: padding is not random")
			}
		})
	}
}

// tr31WithLength rewrites a block's length field to match the block.
func tr31WithLength(s string) string {
	if len(s) < 5 {
		return s
	}
	return s[:1] + strings.Repeat("0", 4-len(tr31Itoa(len(s)))) + tr31Itoa(len(s)) + s[5:]
}

func tr31Itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestUnwrapKeyBlockErrors(t *testing.T) {
	const good = "B0080P0TE00E000094B420079CC80BA3461F86FE26EFC4A3B8E4FA4C5F5341176EED7B727B8A248E"
	kbpk := tr31KBPK(t, TDES, "DD7515F2BFC17F85CE48F3CA25CB21F6")
	flip := func(s string, i int) string {
		c := byte('0')
		if s[i] == '0' {
			c = '1'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	tests := []struct {
		name    string
		give    string
		kbpk    Key
		wantErr error
	}{
		{"MAC altered", flip(good, len(good)-1), kbpk, ErrKeyBlockMAC},
		{"enciphered key altered", flip(good, 20), kbpk, ErrKeyBlockMAC},
		{"header altered", good[:8] + "D" + good[9:], kbpk, ErrKeyBlockMAC},
		{"other KBPK", good, tr31KBPK(t, TDES, "0123456789ABCDEFFEDCBA9876543210"), ErrKeyBlockMAC},
		{"AES KBPK for version B", good, tr31KBPK(t, AES, "0123456789ABCDEFFEDCBA9876543210"), ErrKeyBlock},
		{"ZPK as KBPK", good, tr31Key(t, UsageZPK, TDES, "DD7515F2BFC17F85CE48F3CA25CB21F6"), ErrKeyUsage},
		{"length field too long", "B0081" + good[5:], kbpk, ErrKeyBlock},
		{"length field not digits", "B00X0" + good[5:], kbpk, ErrKeyBlock},
		{"truncated", good[:79], kbpk, ErrKeyBlock},
		{"header only", tr31WithLength("B0016P0TE00E0000"), kbpk, ErrKeyBlock},
		{"too short", "B0010P0TE", kbpk, ErrKeyBlock},
		{"version X", "X" + good[1:], kbpk, ErrKeyBlock},
		{"lower-case version", "b" + good[1:], kbpk, ErrKeyBlock},
		{"bad exportability", good[:11] + "Q" + good[12:], kbpk, ErrKeyBlock},
		{"reserved not 00", good[:14] + "01" + good[16:], kbpk, ErrKeyBlock},
		{"optional count not digits", good[:12] + "0X" + good[14:], kbpk, ErrKeyBlock},
		{"non-hex enciphered key", good[:16] + "ZZ" + good[18:], kbpk, ErrKeyBlock},
		{"non-hex MAC", good[:len(good)-2] + "ZZ", kbpk, ErrKeyBlock},
		{"non-printable", good[:20] + "\x01" + good[21:], kbpk, ErrKeyBlock},
		{"enciphered field not block aligned", tr31WithLength(good[:16] + good[24:]), kbpk, ErrKeyBlock},
		{"optional block missing", tr31WithLength("B0000P0TE00E0100" + good[16:]), kbpk, ErrKeyBlock},
		{"optional block length short", tr31WithLength("B0000P0TE00E0100KS02" + good[20:]), kbpk, ErrKeyBlock},
		{"optional block length not hex", tr31WithLength("B0000P0TE00E0100KS1Y" + good[20:]), kbpk, ErrKeyBlock},
		{"optional block runs past end", tr31WithLength("B0000P0TE00E0100KSFF" + good[20:]), kbpk, ErrKeyBlock},
		{"extended length of length zero", tr31WithLength("B0000P0TE00E0100KS0000" + good[22:]), kbpk, ErrKeyBlock},
		{"optional block ID not alphanumeric", tr31WithLength("B0000P0TE00E0100**04" + good[20:]), kbpk, ErrKeyBlock},
		{"header not block aligned", tr31WithLength("B0000P0TE00E0100KS06AB" + good[16:]), kbpk, ErrKeyBlock},
		{"zero key length", tr31RawBlock(t, kbpk, []byte{0, 0, 1, 2, 3, 4, 5, 6}), kbpk, ErrKeyBlock},
		{"key length past payload", tr31RawBlock(t, kbpk, []byte{0, 128, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), kbpk, ErrKeyBlock},
		{"key length not whole bytes", tr31RawBlock(t, kbpk, []byte{0, 7, 1, 2, 3, 4, 5, 6}), kbpk, ErrKeyBlock},
		// Key version number c1: component 1 of a key (TR-31:2018 A.5.4).
		// The A.7.2.2 KBPK and A.7.2.1 key, wrapped by psec 1.3.0 tr31.wrap.
		{"key component (version number c1)", tr31ComponentBlock, kbpk, ErrKeyBlock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := UnwrapKeyBlock(tt.kbpk, tt.give, UnwrapOptions{ID: "k", Version: 1})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("UnwrapKeyBlock(%s) error = %v, want %v", tt.name, err, tt.wantErr)
			}
			// The message may name header fields but never the key field or MAC.
			if len(tt.give) > 24 {
				for i := 16; i+8 <= len(tt.give); i += 4 {
					if frag := tt.give[i : i+8]; strings.Contains(err.Error(), frag) {
						t.Fatalf("error %q echoes part of the block", err)
					}
				}
			}
		})
	}
	// The hand-made blocks above must fail for their key length, not their MAC.
	if _, _, err := unwrapKeyBlock(kbpk, tr31RawBlock(t, kbpk, []byte{0, 0, 1, 2, 3, 4, 5, 6})); err == nil || errors.Is(err, ErrKeyBlockMAC) {
		t.Errorf("zero-length block: error = %v, want a key length error", err)
	}
}

// tr31ComponentBlock is a valid version B block (MAC and all) whose key
// version number "c1" says it carries component 1 of a key.
const tr31ComponentBlock = "B0096P0TEc1E00002F74123B84D681D213A0F2AF46C7F8A5F5D9A2521660DD737FD0CAEB3662EC098373F2D987DB36BB"

// tr31RawBlock builds a version B block around an arbitrary clear payload (key
// length field included), to reach the checks that follow the MAC.
func tr31RawBlock(t *testing.T, kbpk Key, payload []byte) string {
	t.Helper()
	hdr := "B0000M3TC00E0000"
	hdr = tr31WithLength(hdr + strings.Repeat("0", 2*len(payload)+16))[:16]
	kbek, kbak, err := deriveKeyBlockKeys(kbpk)
	if err != nil {
		t.Fatal(err)
	}
	mac := cmac(kbak, append([]byte(hdr), payload...))
	enc := make([]byte, len(payload))
	cipher.NewCBCEncrypter(kbek, mac).CryptBlocks(enc, payload)
	return hdr + strings.ToUpper(hex.EncodeToString(enc)+hex.EncodeToString(mac))
}

func tr31Key(t testing.TB, u Usage, alg Algorithm, h string) Key {
	t.Helper()
	k, err := ParseHexKey(string(u), u, alg, 1, h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeyBlockHeaderOptional(t *testing.T) {
	tests := []struct {
		give string
		want []OptionalBlock
	}{
		{"B0000P0TE00N0100KS1800604B120F9292800000", []OptionalBlock{{"KS", "00604B120F9292800000"}}},
		{"B0000P0TE00N0200KS1200604B120F9292PB0600", []OptionalBlock{{"KS", "00604B120F9292"}}},
		{"B0000P0TE00N0200KS00011600604B120F9292PB0A000000", []OptionalBlock{{"KS", "00604B120F9292"}}},
		{"B0000P0TE00N0400KS1800604B120F9292800000T104T20600PB0600", []OptionalBlock{{"KS", "00604B120F9292800000"}, {"T1", ""}, {"T2", "00"}}},
		{"B0000P0TE00N0200KS0002010A" + strings.Repeat("P", 256) + "PB0600", []OptionalBlock{{"KS", strings.Repeat("P", 256)}}},
	}
	for _, tt := range tests {
		give := tr31WithLength(tt.give)
		h, err := ParseKeyBlockHeader(give)
		if err != nil {
			t.Errorf("ParseKeyBlockHeader(%.40s) error = %v", give, err)
			continue
		}
		if !reflect.DeepEqual(h.Optional, tt.want) {
			t.Errorf("ParseKeyBlockHeader(%.40s).Optional = %v, want %v", give, h.Optional, tt.want)
		}
	}
}

func TestKeyBlockHeaderUsage(t *testing.T) {
	tests := []struct {
		give string
		want Usage
	}{
		{"P0", UsageZPK}, {"K0", UsageZMK}, {"K1", UsageZMK}, {"M3", UsageTAK}, {"M6", UsageTAK},
		{"V1", UsagePVK}, {"V2", UsagePVK},
	}
	for _, tt := range tests {
		got, err := KeyBlockHeader{KeyUsage: tt.give}.Usage()
		if err != nil || got != tt.want {
			t.Errorf("Usage(%s) = %s, %v, want %s", tt.give, got, err, tt.want)
		}
	}
	for _, give := range []string{"D0", "B0", "C0", "E0", "M9", "V9", ""} {
		if _, err := (KeyBlockHeader{KeyUsage: give}).Usage(); !errors.Is(err, ErrKeyUsage) {
			t.Errorf("Usage(%q) error = %v, want ErrKeyUsage", give, err)
		}
	}
	h := KeyBlockHeader{KeyUsage: "P0"}
	if !h.UsageAllowed(UsageTPK) || !h.UsageAllowed(UsageZPK) || h.UsageAllowed(UsageZMK) {
		t.Error("P0 must allow ZPK and TPK only")
	}
}

func TestWrapKeyBlockRefuses(t *testing.T) {
	tdesKBPK := tr31KBPK(t, TDES, "0123456789ABCDEFFEDCBA9876543210")
	aesKey := tr31Key(t, UsageZPK, AES, "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF")
	h := KeyBlockHeader{Version: 'B', KeyUsage: "P0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E'}
	if _, err := WrapKeyBlock(tdesKBPK, h, aesKey); !errors.Is(err, ErrKeyBlock) {
		t.Errorf("WrapKeyBlock(AES key, version B) error = %v, want ErrKeyBlock", err)
	}
	lmk := tr31Key(t, UsageLMK, AES, "00112233445566778899AABBCCDDEEFF")
	if _, err := NewKeyBlockHeader(lmk, lmk); !errors.Is(err, ErrKeyUsage) {
		t.Errorf("NewKeyBlockHeader(LMK) error = %v, want ErrKeyUsage", err)
	}
	h.Version = 'A'
	h.Algorithm = 'T'
	zpk := tr31Key(t, UsageZPK, TDES, "1111111111111111222222222222222A")
	if _, err := WrapKeyBlock(tdesKBPK, h, zpk); !errors.Is(err, ErrKeyBlock) {
		t.Errorf("WrapKeyBlock(version A) error = %v, want ErrKeyBlock", err)
	}
}

func FuzzParseKeyBlock(f *testing.F) {
	v := loadTR31Vectors(f)
	for _, e := range v.Unwrap {
		f.Add(e.Block)
	}
	for _, e := range v.Wrap {
		f.Add(e.Block)
	}
	f.Add("B0000P0TE00N0200KS00011600604B120F9292PB0A000000")
	tdes := tr31KBPK(f, TDES, "0123456789ABCDEFFEDCBA9876543210")
	aesK := tr31KBPK(f, AES, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key := tr31Key(f, UsageZPK, TDES, "1111111111111111222222222222222A")
	f.Fuzz(func(t *testing.T, block string) {
		_, _, _ = unwrapKeyBlock(tdes, block)
		_, _, _ = unwrapKeyBlock(aesK, block)
		h, err := ParseKeyBlockHeader(block)
		if err != nil {
			return
		}
		// Whatever header parsed must wrap and unwrap to itself with the key.
		kbpk := aesK
		h.Version, h.Algorithm = 'D', 'T'
		block2, err := WrapKeyBlock(kbpk, h, key)
		if err != nil {
			if !errors.Is(err, ErrKeyBlock) {
				t.Fatalf("WrapKeyBlock(parsed header) error = %v, want ErrKeyBlock", err)
			}
			return
		}
		h2, raw, err := unwrapKeyBlock(kbpk, block2)
		if err != nil {
			t.Fatalf("unwrapKeyBlock(WrapKeyBlock()) error = %v", err)
		}
		want, _ := keyBytes(key)
		if !bytes.Equal(raw, want) {
			t.Fatal("round trip changed the key")
		}
		h.Length = h2.Length
		if len(h.Optional) == 0 {
			h.Optional = nil
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip header = %v, want %v", h2, h)
		}
	})
}

// The header of a TR-31 block is clear: it can be read without any key.
// The block is TR-31:2018 Annex A.7.3.2.
func ExampleParseKeyBlockHeader() {
	h, err := ParseKeyBlockHeader("B0104B0TX12S0100KS1800604B120F9292800000BB68BE8680A400D9191AD4ECE45B6E6C0D21C4738A52190E248719E24B433627")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("version %c, %d chars, usage %s, algorithm %c, mode %c, key version %s, exportability %c\n",
		h.Version, h.Length, h.KeyUsage, h.Algorithm, h.ModeOfUse, h.KeyVersion, h.Exportability)
	fmt.Println(h.Optional)
	_, err = h.Usage()
	fmt.Println(err)
	// Output:
	// version B, 104 chars, usage B0, algorithm T, mode X, key version 12, exportability S
	// [{KS 00604B120F9292800000}]
	// key usage not permitted: TR-31 key usage "B0" has no pingate usage
}

// TestKeyBlockKCVBlocksPublished: the openemv/tr31 README's "decrypt a key
// block" example (KBPK AB2E09DB3EF0BA71E0CE6CD755C23A3B, a TDES BDK with
// optional blocks KS, KC and KP, both check values legacy): the carried key
// and the KBPK match their KC and KP.
func TestKeyBlockKCVBlocksPublished(t *testing.T) {
	const block = "B0128B1TX00N0300KS18FFFF00A0200001E00000KC0C000169E3KP0C00ECAD62" +
		"6F9F1A826814AA066D86C8C18BD0E14033E1EBEC75BEDF586E6E325F3AA8C0E5"
	kbpk := tr31KBPK(t, TDES, "AB2E09DB3EF0BA71E0CE6CD755C23A3B")
	h, raw, err := unwrapKeyBlock(kbpk, block)
	if err != nil {
		t.Fatalf("unwrapKeyBlock() = %v", err)
	}
	defer clear(raw)
	// B1 (DUKPT initial key) has no pingate usage: the key is held as a ZPK
	// only to check its KCV.
	k, err := NewKey("bdk", UsageZPK, TDES, 1, raw)
	if err != nil {
		t.Fatal(err)
	}
	if k.KCV() != "0169E3" {
		t.Fatalf("carried key KCV = %s, want 0169E3 (the README's key BF82…CEB6)", k.KCV())
	}
	if err := h.checkKCVBlocks(k, kbpk); err != nil {
		t.Fatalf("checkKCVBlocks() = %v, want nil", err)
	}
	other := tr31KBPK(t, TDES, "89E88CF7931444F334BD7547FC3F380C")
	if err := h.checkKCVBlocks(k, other); !errors.Is(err, ErrKCVMismatch) {
		t.Fatalf("checkKCVBlocks(another KBPK) = %v, want %v", err, ErrKCVMismatch)
	}
}

// TestUnwrapKeyBlockChecksKCVBlocks: through UnwrapKeyBlock, a block whose
// MAC verifies but whose KC or KP names another key is refused with
// ErrKCVMismatch, in both KCV algorithms; a malformed KC is ErrKeyBlock.
func TestUnwrapKeyBlockChecksKCVBlocks(t *testing.T) {
	kbpk := tr31KBPK(t, AES, "000102030405060708090A0B0C0D0E0F")
	k := tr31Key(t, UsageZPK, TDES, "1111111111111111222222222222222A")
	kb, _ := kbpk.blockCipher()
	kk, _ := k.blockCipher()
	legacy := func(b cipher.Block) string {
		z := make([]byte, b.BlockSize())
		b.Encrypt(z, z)
		return "00" + strings.ToUpper(hex.EncodeToString(z[:3]))
	}
	cmacKCV := func(b cipher.Block) string {
		return "01" + strings.ToUpper(hex.EncodeToString(cmac(b, make([]byte, b.BlockSize()))[:5]))
	}
	tests := []struct {
		name string
		give []OptionalBlock
		want error
	}{
		{"legacy KC and CMAC KP", []OptionalBlock{{ID: "KC", Data: legacy(kk)}, {ID: "KP", Data: cmacKCV(kb)}}, nil},
		{"CMAC KC and legacy KP", []OptionalBlock{{ID: "KC", Data: cmacKCV(kk)}, {ID: "KP", Data: legacy(kb)}}, nil},
		{"KC of the KBPK", []OptionalBlock{{ID: "KC", Data: legacy(kb)}}, ErrKCVMismatch},
		{"KP of the key", []OptionalBlock{{ID: "KP", Data: cmacKCV(kk)}}, ErrKCVMismatch},
		{"unknown KCV algorithm", []OptionalBlock{{ID: "KC", Data: "02" + legacy(kk)[2:]}}, ErrKeyBlock},
		{"KC too short", []OptionalBlock{{ID: "KC", Data: "00AB"}}, ErrKeyBlock},
		{"KC not hex", []OptionalBlock{{ID: "KC", Data: "00ZZZZZZ"}}, ErrKeyBlock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewKeyBlockHeader(k, kbpk)
			if err != nil {
				t.Fatal(err)
			}
			h.Optional = tt.give
			block, err := WrapKeyBlock(kbpk, h, k)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := UnwrapKeyBlock(kbpk, block, UnwrapOptions{ID: "x", Version: 1})
			if !errors.Is(err, tt.want) {
				t.Fatalf("UnwrapKeyBlock() = %v, want %v", err, tt.want)
			}
			if err == nil && got.KCV() != k.KCV() {
				t.Fatalf("UnwrapKeyBlock() gave KCV %s, want %s", got.KCV(), k.KCV())
			}
		})
	}
}

// TestVariantKeyBlockKeysLeaveNoCopy: the version A/C keys are derived from
// a double-length KBPK without a second, uncleared copy of the KBPK (an
// append that moves it): no more allocations than for a triple-length KBPK.
func TestVariantKeyBlockKeysLeaveNoCopy(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	allocs := func(kbpk Key) float64 {
		return testing.AllocsPerRun(20, func() {
			if _, _, err := variantKeyBlockKeys(kbpk); err != nil {
				t.Fatal(err)
			}
		})
	}
	double := tr31KBPK(t, TDES, "89E88CF7931444F334BD7547FC3F380C")                 // TR-31:2018 A.7.2.1
	triple := tr31KBPK(t, TDES, "89E88CF7931444F334BD7547FC3F380C0123456789ABCDEF") // the same, K3 added
	if d, tr := allocs(double), allocs(triple); d > tr {
		t.Errorf("variantKeyBlockKeys(double-length KBPK) = %v allocations, triple-length %v; want no more: an extra one is a copy of the KBPK left uncleared", d, tr)
	}
}
