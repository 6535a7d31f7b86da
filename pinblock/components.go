package pinblock

import (
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Split knowledge (ANSI X9.24-1, PCI PIN requirement 25): a zone master key
// travels as two or three clear components, each held by a different
// custodian, and exists whole only inside the security module, where the
// components are combined by XOR.

// MinComponents and MaxComponents bound the number of components combined.
const (
	MinComponents = 2
	MaxComponents = 3
)

// Component is one clear key component as a custodian enters it, with the
// check value printed on the custodian's component form. Material is secret:
// Component has no String of its bytes, and CombineComponents clears it.
type Component struct {
	Material []byte
	KCV      string
}

// String shows a component by its KCV only.
func (c Component) String() string { return "component(kcv=" + c.KCV + ")" }

// Format makes every fmt verb print String, so %x cannot reach Material.
func (c Component) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// GoString keeps %#v from reaching Material.
func (c Component) GoString() string { return c.String() }

// Zeroize clears the component's bytes (best-effort, see Key.Zeroize).
func (c Component) Zeroize() { clear(c.Material) }

// ParseComponent decodes a hex component (spaces allowed between groups, as
// forms print them) and keeps its KCV. The error never repeats the input.
func ParseComponent(hexComponent, kcv string) (Component, error) {
	s := strings.Join(strings.Fields(hexComponent), "")
	raw, err := hex.DecodeString(s)
	if err != nil {
		return Component{}, fmt.Errorf("%w: component is not hexadecimal", ErrInvalidKey)
	}
	k := strings.ToUpper(strings.TrimSpace(kcv))
	if _, err := hex.DecodeString(k); err != nil || len(k) < 4 {
		clear(raw)
		return Component{}, fmt.Errorf("%w: component KCV must be at least 4 hex digits", ErrInvalidKey)
	}
	return Component{Material: raw, KCV: k}, nil
}

// CombineComponents checks each component against its own KCV, refuses
// repeated components (two equal components cancel out and defeat split
// knowledge), XORs them into a key of the given id, usage, algorithm and
// version, and returns it; its KCV is the one to read back to the
// custodians. TDES results are set to odd parity, which does not change the
// KCV. Every component's Material is cleared before CombineComponents
// returns, whatever the outcome. Errors: ErrInvalidKey (count, lengths,
// repeats), ErrKCVMismatch naming the component's position.
func CombineComponents(id string, usage Usage, alg Algorithm, version int, comps []Component) (Key, error) {
	defer func() {
		for _, c := range comps {
			c.Zeroize()
		}
	}()
	if len(comps) < MinComponents || len(comps) > MaxComponents {
		return Key{}, fmt.Errorf("%w: key %s: %d components, want %d to %d", ErrInvalidKey, id, len(comps), MinComponents, MaxComponents)
	}
	n := len(comps[0].Material)
	for i, c := range comps {
		if len(c.Material) != n {
			return Key{}, fmt.Errorf("%w: key %s: component %d is %d bytes, component 1 is %d", ErrInvalidKey, id, i+1, len(c.Material), n)
		}
		ck, err := NewKey(fmt.Sprintf("%s/component-%d", id, i+1), usage, alg, version, c.Material)
		if err != nil {
			return Key{}, fmt.Errorf("key %s: component %d: %w", id, i+1, err)
		}
		err = ck.CheckKCV(c.KCV)
		ck.Zeroize()
		if err != nil {
			return Key{}, fmt.Errorf("key %s: component %d: %w", id, i+1, err)
		}
		for j := 0; j < i; j++ {
			if subtle.ConstantTimeCompare(c.Material, comps[j].Material) == 1 {
				return Key{}, fmt.Errorf("%w: key %s: components %d and %d are identical", ErrInvalidKey, id, j+1, i+1)
			}
		}
	}
	out := make([]byte, n)
	defer clear(out)
	for _, c := range comps {
		subtle.XORBytes(out, out, c.Material)
	}
	if alg == TDES {
		setOddParity(out)
	}
	return NewKey(id, usage, alg, version, out)
}

// setOddParity sets the low bit of every byte so that the byte has an odd
// number of one bits, as DES keys conventionally carry (FIPS 46-3). DES
// ignores these bits, so the key's behaviour and KCV are unchanged.
func setOddParity(b []byte) {
	for i, c := range b {
		c &^= 1
		p := c ^ c>>4
		p ^= p >> 2
		p ^= p >> 1
		b[i] = c | (^p & 1)
	}
}
