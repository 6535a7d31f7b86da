package records

import (
	"errors"
	"fmt"
	"regexp"
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

func TestMaskPANs(t *testing.T) {
	tests := []struct{ give, want string }{
		{`{"card_token":"4111111111111111"}`, `{"card_token":"411111******1111"}`},
		{`{"n":123456789012}`, `{"n":********9012}`},
		{`4111111111111111`, `411111******1111`},
		// not PAN-shaped: too short, too long, part of a token
		{`{"n":12345678901}`, `{"n":12345678901}`},
		{`{"n":12345678901234567890}`, `{"n":12345678901234567890}`},
		{`{"t":"a4111111111111111"}`, `{"t":"a4111111111111111"}`},
		{``, ``},
	}
	// Failure messages show no digit run that could be a PAN.
	hide := regexp.MustCompile(`[0-9]{12,19}`)
	for i, tt := range tests {
		if got := string(maskPANs([]byte(tt.give))); got != tt.want {
			t.Errorf("maskPANs(tests[%d]) = %q, want %q", i, hide.ReplaceAllString(got, "<digits>"), tt.want)
		}
	}
}

// TestConsumerConfigBatchBound: --batch is refused above MaxBatchSize, the
// bound that keeps a batch's per-card locks inside PostgreSQL's default lock
// table.
func TestConsumerConfigBatchBound(t *testing.T) {
	tests := []struct {
		give    int
		wantErr bool
	}{
		{give: 0}, {give: 200}, {give: MaxBatchSize}, {give: MaxBatchSize + 1, wantErr: true}, {give: 10000, wantErr: true},
	}
	for _, tt := range tests {
		err := ConsumerConfig{Brokers: []string{"127.0.0.1:9092"}, BatchSize: tt.give}.Validate()
		if (err != nil) != tt.wantErr {
			t.Errorf("Validate(batch %d) = %v, want error %v", tt.give, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprint(tt.give)) {
			t.Errorf("Validate(batch %d) = %q, does not name the value", tt.give, err)
		}
	}
}
