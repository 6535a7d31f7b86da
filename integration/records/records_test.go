package records

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURLRefusesPasswords(t *testing.T) {
	tests := []struct {
		give string
		want error
	}{
		{"", ErrNoPostgres},
		{"  ", ErrNoPostgres},
		{"postgres://u:s3cret@127.0.0.1:5432/db", ErrPasswordInURL},
		{"postgres://u@127.0.0.1:5432/db?password=s3cret", ErrPasswordInURL},
		{"host=127.0.0.1 user=u password=s3cret", ErrPasswordInURL},
	}
	for _, tt := range tests {
		_, err := parseURL(tt.give)
		if !errors.Is(err, tt.want) {
			t.Errorf("parseURL(<%d bytes>) = %v, want %v", len(tt.give), err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("parseURL error repeats the password: %v", err)
		}
	}
	if _, err := parseURL("postgres://u@127.0.0.1:5432/db?sslmode=disable"); err != nil {
		t.Errorf("parseURL(a URL without password) = %v, want nil", err)
	}
}

func TestTypeLabel(t *testing.T) {
	tests := []struct{ give, want string }{
		{"", "none"},
		{"pingate.pin.something.new.v2", "pingate.pin.something.new.v2"},
		{"with space", "other"},
		{strings.Repeat("a", 65), "other"},
		{"4242424242424242\n", "other"},
	}
	for _, tt := range tests {
		if got := typeLabel(tt.give); got != tt.want {
			t.Errorf("typeLabel(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestColumnText(t *testing.T) {
	tests := []struct{ give, want string }{
		{"pingate.pin.changed.v1", "pingate.pin.changed.v1"},
		{"a\x00b", "a\uFFFDb"},
		{"a\xff\xfeb", "a\uFFFDb"},
		{strings.Repeat("a", 300), strings.Repeat("a", 256)},
		{strings.Repeat("a", 255) + "é", strings.Repeat("a", 255)},
	}
	for _, tt := range tests {
		if got := columnText(tt.give); got != tt.want {
			t.Errorf("columnText(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
