package routing

import "testing"

func TestLooksSecret(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"T0117-07", false},
		{"12345678901", false},
		{"123456789012", true},
		{"T-1234567890123", true},
		{"0123456789abcde", false},
		{"0123456789abcdef", true},
		{"DEADBEEF01234567", true},
		{"DEADBEEF-1234567", false},
		{"", false},
	}
	for i, tt := range tests {
		// The cases are made up, but a failure names the case, not the value.
		if got := LooksSecret(tt.give); got != tt.want {
			t.Errorf("LooksSecret(case %d, %d characters) = %v, want %v", i, len(tt.give), got, tt.want)
		}
	}
}
