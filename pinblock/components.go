package pinblock

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
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
// check value printed on the custodian's component form. It is opaque, like
// Key: the bytes sit behind a pointer to an unexported struct, nothing
// exports them, every fmt verb and slog print only the KCV, and JSON and
// text marshalling refuse (ErrMarshalKey). Copies of a Component share the
// bytes, so Zeroize (and CombineComponents, which calls it) clears every
// copy. The zero Component holds nothing.
type Component struct {
	c *component
}

type component struct {
	material []byte
	kcv      string
}

// NewComponent copies material into a new Component with the check value kcv
// (at least 4 hex digits). The caller may clear material afterwards. The
// error never repeats the material.
func NewComponent(material []byte, kcv string) (Component, error) {
	k := strings.ToUpper(strings.TrimSpace(kcv))
	if _, err := hex.DecodeString(k); err != nil || len(k) < 4 {
		return Component{}, fmt.Errorf("%w: component KCV must be at least 4 hex digits", ErrInvalidKey)
	}
	if len(material) == 0 {
		return Component{}, fmt.Errorf("%w: component is empty", ErrInvalidKey)
	}
	return Component{c: &component{material: bytes.Clone(material), kcv: k}}, nil
}

// KCV is the check value the component was entered with (upper case).
func (c Component) KCV() string {
	if c.c == nil {
		return ""
	}
	return c.c.kcv
}

// Len is the component's length in bytes.
func (c Component) Len() int {
	if c.c == nil {
		return 0
	}
	return len(c.c.material)
}

// String shows a component by its KCV only.
func (c Component) String() string {
	if c.c == nil {
		return "component(none)"
	}
	return "component(kcv=" + c.c.kcv + ")"
}

// Format makes every fmt verb, %x and %#v included, print String.
func (c Component) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// GoString keeps %#v from reaching the bytes.
func (c Component) GoString() string { return c.String() }

// LogValue shows the component in slog by its KCV only.
func (c Component) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON refuses: component bytes never leave in JSON.
func (c Component) MarshalJSON() ([]byte, error) { return nil, ErrMarshalKey }

// MarshalText refuses as well, so encoders that prefer text cannot leak it.
func (c Component) MarshalText() ([]byte, error) { return nil, ErrMarshalKey }

// Zeroize clears the component's bytes for every copy of c (best-effort:
// the Go runtime may have copied them, see Key.Zeroize).
func (c Component) Zeroize() {
	if c.c != nil {
		clear(c.c.material)
	}
}

// material is the component's bytes, for CombineComponents only.
func (c Component) material() []byte {
	if c.c == nil {
		return nil
	}
	return c.c.material
}

// ParseComponent decodes a hex component (spaces allowed between groups, as
// forms print them) and keeps its KCV. The error never repeats the input.
func ParseComponent(hexComponent, kcv string) (Component, error) {
	s := strings.Join(strings.Fields(hexComponent), "")
	raw, err := hex.DecodeString(s)
	if err != nil {
		return Component{}, fmt.Errorf("%w: component is not hexadecimal", ErrInvalidKey)
	}
	defer clear(raw)
	return NewComponent(raw, kcv)
}

// CombineComponents checks each component against its own KCV, refuses
// repeated components (two equal components cancel out and defeat split
// knowledge; TDES components are compared without their parity bits) and
// an all-zero component (which adds nothing), XORs them into a key of the given id, usage, algorithm and
// version, and returns it; its KCV is the one to read back to the
// custodians. TDES results are set to odd parity, which does not change the
// KCV. Every component's bytes are cleared before CombineComponents
// returns, whatever the outcome. Errors: ErrInvalidKey (count, lengths,
// repeats, an all-zero component, a result NewKey refuses), ErrKCVMismatch
// naming the component's position.
func CombineComponents(id string, usage Usage, alg Algorithm, version int, comps []Component) (Key, error) {
	defer func() {
		for _, c := range comps {
			c.Zeroize()
		}
	}()
	if len(comps) < MinComponents || len(comps) > MaxComponents {
		return Key{}, fmt.Errorf("%w: key %s: %d components, want %d to %d", ErrInvalidKey, id, len(comps), MinComponents, MaxComponents)
	}
	n := comps[0].Len()
	for i, c := range comps {
		if c.Len() != n || n == 0 {
			return Key{}, fmt.Errorf("%w: key %s: component %d is %d bytes, component 1 is %d", ErrInvalidKey, id, i+1, c.Len(), n)
		}
		// Before the check value: NewKey refuses an all-zero TDES
		// component as a degenerate key, which would not say what is wrong.
		if zeroComponent(alg, c.material()) {
			return Key{}, fmt.Errorf("%w: key %s: component %d is all zeros", ErrInvalidKey, id, i+1)
		}
		ck, err := NewKey(fmt.Sprintf("%s/component-%d", id, i+1), usage, alg, version, c.material())
		if err != nil {
			return Key{}, fmt.Errorf("key %s: component %d: %w", id, i+1, err)
		}
		err = ck.CheckKCV(c.KCV())
		ck.Zeroize()
		if err != nil {
			return Key{}, fmt.Errorf("key %s: component %d: %w", id, i+1, err)
		}
		for j := 0; j < i; j++ {
			if sameComponent(alg, c.material(), comps[j].material()) {
				return Key{}, fmt.Errorf("%w: key %s: components %d and %d are identical", ErrInvalidKey, id, j+1, i+1)
			}
		}
	}
	out := make([]byte, n)
	defer clear(out)
	for _, c := range comps {
		subtle.XORBytes(out, out, c.material())
	}
	if alg == TDES {
		SetOddParity(out)
	}
	return NewKey(id, usage, alg, version, out)
}

// sameComponent reports, in constant time, whether two components are the
// same key material: for TDES the parity bits are ignored, since DES does not
// use them and two components differing only there cancel out when XORed
// (and share a KCV), which would leave the key known to the other
// custodians.
func sameComponent(alg Algorithm, a, b []byte) bool {
	if alg != TDES {
		return subtle.ConstantTimeCompare(a, b) == 1
	}
	if len(a) != len(b) {
		return false
	}
	var diff byte
	for i := range a {
		diff |= (a[i] ^ b[i]) &^ 1
	}
	return subtle.ConstantTimeByteEq(diff, 0) == 1
}

// zeroComponent reports, in constant time, whether a component is all zeros
// (for TDES, ignoring the parity bits): such a component adds nothing to the
// XOR, so the other components alone would make the key.
func zeroComponent(alg Algorithm, m []byte) bool {
	var or byte
	for _, c := range m {
		if alg == TDES {
			c &^= 1
		}
		or |= c
	}
	return subtle.ConstantTimeByteEq(or, 0) == 1
}

// SetOddParity sets the low bit of every byte so that the byte has an odd
// number of one bits, as DES keys conventionally carry (FIPS 46-3). DES
// ignores these bits, so the key's behaviour and KCV are unchanged. It is
// the one parity function of the module: the HSM simulator uses it too.
func SetOddParity(b []byte) {
	for i, c := range b {
		c &^= 1
		p := c ^ c>>4
		p ^= p >> 2
		p ^= p >> 1
		b[i] = c | (^p & 1)
	}
}

// OddParity reports whether every byte of b has an odd number of one bits
// (DES key parity).
func OddParity(b []byte) bool {
	for _, c := range b {
		c ^= c >> 4
		c ^= c >> 2
		c ^= c >> 1
		if c&1 == 0 {
			return false
		}
	}
	return true
}
