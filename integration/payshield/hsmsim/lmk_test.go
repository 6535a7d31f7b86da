package hsmsim

import "testing"

// TestVariantLMKVector checks the variant scheme against the published
// vector of nickntg/thalessimulatorlibrary (Tests/.../DES/CryptTests.cs
// EncryptWithLmkVariant): LMK pair 28-29, variant 2, double-length scheme.
func TestVariantLMKVector(t *testing.T) {
	s := testLMKSet()
	clear := []byte{0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xF1, 0xC1, 0xC1, 0xC1, 0xC1, 0xC1, 0xC1, 0xC1, 0xC1}
	// Key type 209: variant 2, LMK code 09 = pair 28-29.
	got, err := s.encipher("209", 'U', clear)
	if err != nil {
		t.Fatal(err)
	}
	if want := "U5178C9D3D1052B15BF6AEC458B4A4564"; got != want {
		t.Fatalf("encipher = %s, want %s", got, want)
	}
	back, err := s.decipher("209", got)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != string(clear) {
		t.Fatal("decipher does not invert encipher")
	}
}
