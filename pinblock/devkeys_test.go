package pinblock

import (
	"errors"
	"testing"
)

// TestDevelopmentKeysCopies: DevelopmentKeys hands out a copy; changing it
// changes neither the set nor the keys DevelopmentKey builds.
func TestDevelopmentKeysCopies(t *testing.T) {
	got := DevelopmentKeys()
	if len(got) == 0 {
		t.Fatal("DevelopmentKeys() is empty")
	}
	want, err := DevelopmentKey(got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	got[0].Hex = "00000000000000000000000000000000"
	got[0].ID = "changed"
	again := DevelopmentKeys()
	if again[0].ID == "changed" || again[0].Hex == got[0].Hex {
		t.Errorf("DevelopmentKeys()[0] = %s after changing a returned copy, want the published key", again[0].ID)
	}
	k, err := DevelopmentKey(want.ID())
	if err != nil || k.KCV() != want.KCV() {
		t.Errorf("DevelopmentKey(%s) KCV = %s, %v, want %s", want.ID(), k.KCV(), err, want.KCV())
	}
	if _, err := DevelopmentKey("changed"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("DevelopmentKey(changed) error = %v, want ErrUnknownKey", err)
	}
}
