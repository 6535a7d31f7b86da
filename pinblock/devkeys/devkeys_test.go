package devkeys

import (
	"errors"
	"testing"

	"pingate/pinblock"
)

// TestAllCopies: All hands out a copy; changing it
// changes neither the set nor the keys DevelopmentKey builds.
func TestAllCopies(t *testing.T) {
	got := All()
	if len(got) == 0 {
		t.Fatal("All() is empty")
	}
	want, err := Key(got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	got[0].Hex = "00000000000000000000000000000000"
	got[0].ID = "changed"
	again := All()
	if again[0].ID == "changed" || again[0].Hex == got[0].Hex {
		t.Errorf("All()[0] = %s after changing a returned copy, want the published key", again[0].ID)
	}
	k, err := Key(want.ID())
	if err != nil || k.KCV() != want.KCV() {
		t.Errorf("Key(%s) KCV = %s, %v, want %s", want.ID(), k.KCV(), err, want.KCV())
	}
	if _, err := Key("changed"); !errors.Is(err, pinblock.ErrUnknownKey) {
		t.Errorf("Key(changed) error = %v, want pinblock.ErrUnknownKey", err)
	}
}
