package pinblock

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strings"
	"testing"
)

// publishedTDESKeys are the TDES keys with published KCVs from
// testdata/tr31-vectors.json (TR-31:2018 Annex A and payShield examples).
func publishedTDESKeys(t *testing.T) (keys [][]byte, kcvs []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range loadTR31Vectors(t).Unwrap {
		if e.KeyAlg != TDES || e.KCV == "" || seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		keys = append(keys, tr31Hex(t, e.Key))
		kcvs = append(kcvs, e.KCV)
	}
	if len(keys) < 3 {
		t.Fatalf("need 3 published TDES keys with KCVs, have %d", len(keys))
	}
	return keys, kcvs
}

func xorAll(parts ...[]byte) []byte {
	out := make([]byte, len(parts[0]))
	for _, p := range parts {
		subtle.XORBytes(out, out, p)
	}
	return out
}

// kcvOf is the KCV of raw, through NewKey (itself checked against the
// published KCVs in TestUnwrapKeyBlockVectors).
func kcvOf(t *testing.T, raw []byte) string {
	t.Helper()
	k, err := NewKey("kcv", UsageZMK, TDES, 1, raw)
	if err != nil {
		t.Fatal(err)
	}
	return k.KCV()
}

// mustComponent is NewComponent for tests.
func mustComponent(t *testing.T, material []byte, kcv string) Component {
	t.Helper()
	c, err := NewComponent(material, kcv)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// zeroized reports whether c's bytes are all zero.
func zeroized(c Component) bool {
	m := c.material()
	return bytes.Equal(m, make([]byte, len(m)))
}

func TestCombineComponents(t *testing.T) {
	keys, kcvs := publishedTDESKeys(t)
	target, targetKCV := keys[0], kcvs[0]

	t.Run("two components give the published key", func(t *testing.T) {
		c2 := xorAll(target, keys[1])
		comps := []Component{
			mustComponent(t, keys[1], kcvs[1]),
			mustComponent(t, c2, kcvOf(t, c2)),
		}
		k, err := CombineComponents("zmk-a", UsageZMK, TDES, 1, comps)
		if err != nil {
			t.Fatalf("CombineComponents() error = %v", err)
		}
		if err := k.CheckKCV(targetKCV); err != nil {
			t.Errorf("combined key KCV = %s, want published %s", k.KCV(), targetKCV)
		}
		for i, c := range comps {
			if !zeroized(c) {
				t.Errorf("component %d not zeroized", i+1)
			}
		}
	})
	t.Run("three components give the published key", func(t *testing.T) {
		c3 := xorAll(target, keys[1], keys[2])
		comps := []Component{
			mustComponent(t, keys[1], kcvs[1]),
			mustComponent(t, keys[2], strings.ToLower(kcvs[2][:4])),
			mustComponent(t, c3, kcvOf(t, c3)),
		}
		k, err := CombineComponents("zmk-b", UsageZMK, TDES, 1, comps)
		if err != nil {
			t.Fatalf("CombineComponents() error = %v", err)
		}
		if err := k.CheckKCV(targetKCV); err != nil {
			t.Errorf("combined key KCV = %s, want published %s", k.KCV(), targetKCV)
		}
	})
}

func TestCombineComponentsErrors(t *testing.T) {
	keys, kcvs := publishedTDESKeys(t)
	comp := func(i int) Component { return mustComponent(t, keys[i], kcvs[i]) }
	tests := []struct {
		name    string
		give    func() []Component
		wantErr error
		wantMsg string
	}{
		{"one component", func() []Component { return []Component{comp(0)} }, ErrInvalidKey, "1 components"},
		{"four components", func() []Component { return []Component{comp(0), comp(1), comp(2), comp(0)} }, ErrInvalidKey, "4 components"},
		{"wrong KCV on component 2", func() []Component {
			return []Component{comp(0), mustComponent(t, keys[1], kcvs[0])}
		}, ErrKCVMismatch, "component 2"},
		{"identical components", func() []Component { return []Component{comp(0), comp(1), comp(0)} }, ErrInvalidKey, "components 1 and 3"},
		// The same component with its parity bits flipped has the same KCV
		// and cancels out the same way: the key would be component 1 alone.
		{"identical but for parity", func() []Component {
			return []Component{comp(0), comp(1), mustComponent(t, flipParity(keys[1]), kcvs[1])}
		}, ErrInvalidKey, "components 2 and 3"},
		// Two components whose XOR makes a triple-length key with K1 = K2,
		// parity aside: single DES under K3.
		{"single-DES result", func() []Component {
			k1, k3 := keys[0][:8], keys[1][:8]
			weak := append(append(append([]byte{}, k1...), flipParity(k1)...), k3...)
			c1 := append(bytes.Clone(keys[2]), keys[0][8:]...)
			c2 := xorAll(c1, weak)
			return []Component{mustComponent(t, c1, kcvOf(t, c1)), mustComponent(t, c2, kcvOf(t, c2))}
		}, ErrInvalidKey, "single DES"},
		{"lengths differ", func() []Component {
			return []Component{comp(0), mustComponent(t, append(bytes.Clone(keys[1]), keys[2][:8]...), kcvs[1])}
		}, ErrInvalidKey, "component 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comps := tt.give()
			_, err := CombineComponents("zmk", UsageZMK, TDES, 1, comps)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
				t.Fatalf("CombineComponents() error = %v, want %v naming %q", err, tt.wantErr, tt.wantMsg)
			}
			for i, c := range comps {
				if !zeroized(c) {
					t.Errorf("component %d not zeroized after an error", i+1)
				}
			}
		})
	}
}

// flipParity returns b with the low (DES parity) bit of every byte flipped.
func flipParity(b []byte) []byte {
	out := bytes.Clone(b)
	for i := range out {
		out[i] ^= 1
	}
	return out
}

// TestCombineComponentsRefusesZeroAES: an all-zero AES component (its KCV
// correct) adds nothing to the XOR, so the other custodian alone knows the
// key.
func TestCombineComponentsRefusesZeroAES(t *testing.T) {
	c1 := tr31Hex(t, "3F419E1CB7079442AA37474C2EFBF8B8") // TR-31:2018 A.7.4 key, KCV 08793E
	zero := make([]byte, 16)
	zk, err := NewKey("zero", UsageZMK, AES, 1, zero)
	if err != nil {
		t.Fatal(err)
	}
	_, err = CombineComponents("zmk", UsageZMK, AES, 1, []Component{mustComponent(t, c1, "08793E"), mustComponent(t, zero, zk.KCV())})
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(fmt.Sprint(err), "component 2 is all zeros") {
		t.Errorf("CombineComponents(AES, zero component 2) = %v, want %v naming component 2", err, ErrInvalidKey)
	}
}

func TestParseComponent(t *testing.T) {
	c, err := ParseComponent("F039 121B EC83 D26B 169B DCD5 B22A AF8F", " cb9dea ")
	if err != nil {
		t.Fatalf("ParseComponent() error = %v", err)
	}
	if c.Len() != 16 || c.KCV() != "CB9DEA" {
		t.Errorf("ParseComponent() = %d bytes kcv %s, want 16 bytes kcv CB9DEA", c.Len(), c.KCV())
	}
	for _, verb := range []string{"%v", "%x", "%#v", "%s", "%+v"} {
		if out := fmt.Sprintf(verb, c); strings.Contains(strings.ToUpper(out), "F039") || strings.Contains(out, "240") {
			t.Errorf("Sprintf(%s, component) shows its bytes", verb)
		}
	}
	if b, err := json.Marshal(c); !errors.Is(err, ErrMarshalKey) {
		t.Errorf("json.Marshal(component) = %d bytes, %v; want ErrMarshalKey", len(b), err)
	}
	if b, err := json.Marshal(struct{ C []Component }{[]Component{c}}); !errors.Is(err, ErrMarshalKey) {
		t.Errorf("json.Marshal(struct holding a component) = %d bytes, %v; want ErrMarshalKey", len(b), err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("entered", "component", c)
	if out := logged.String(); strings.Contains(strings.ToUpper(out), "F039") || !strings.Contains(out, "CB9DEA") {
		t.Errorf("slog of a component = %s, want its KCV and not its bytes", out)
	}
	// NewComponent copies: clearing the caller's slice leaves the component whole.
	raw := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	cc := mustComponent(t, raw, "ABCD")
	clear(raw)
	if zeroized(cc) {
		t.Error("NewComponent kept the caller's slice instead of a copy")
	}
	const secret = "F039121BEC83D26B169BDCD5B22AAF8G"
	if _, err := ParseComponent(secret, "CB9DEA"); err == nil || strings.Contains(err.Error(), "F039") {
		t.Errorf("ParseComponent(non-hex) error = %v, want an error that does not echo the input", err)
	}
	if _, err := ParseComponent("F039121BEC83D26B169BDCD5B22AAF8F", "CB9"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ParseComponent(short KCV) error = %v, want ErrInvalidKey", err)
	}
}

func TestSetOddParity(t *testing.T) {
	keys, kcvs := publishedTDESKeys(t)
	for i, k := range keys {
		b := bytes.Clone(k)
		SetOddParity(b)
		for j, c := range b {
			if bits.OnesCount8(c)%2 != 1 || c&^1 != k[j]&^1 {
				t.Fatalf("SetOddParity: byte %d of key %d has even parity or changed bits", j, i)
			}
		}
		if !OddParity(b) {
			t.Errorf("OddParity(key %d after SetOddParity) = false, want true", i)
		}
		if b[0] ^= 1; OddParity(b) {
			t.Errorf("OddParity(key %d with one bit flipped) = true, want false", i)
		}
		b[0] ^= 1
		if got := kcvOf(t, b); got != kcvs[i] {
			t.Errorf("KCV after parity adjustment = %s, want published %s", got, kcvs[i])
		}
	}
}

// A component prints as its KCV only, whatever the verb.
func ExampleComponent() {
	c, err := ParseComponent("F039 121B EC83 D26B 169B DCD5 B22A AF8F", "cb9dea")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c)
	fmt.Printf("%x %#v\n", c, c)
	// Output:
	// component(kcv=CB9DEA)
	// component(kcv=CB9DEA) component(kcv=CB9DEA)
}

// components splits target into two components, each with its own KCV.
func components(t *testing.T, alg Algorithm, target []byte) []Component {
	t.Helper()
	c1 := make([]byte, len(target))
	for i := range c1 {
		c1[i] = byte(i*37 + 11)
	}
	c2 := xorAll(target, c1)
	kcv := func(b []byte) string {
		k, err := NewKey("c", UsageZMK, alg, 1, b)
		if err != nil {
			t.Fatal(err)
		}
		return k.KCV()
	}
	return []Component{mustComponent(t, c1, kcv(c1)), mustComponent(t, c2, kcv(c2))}
}
