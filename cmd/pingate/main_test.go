package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunUsageErrorsDoNotEchoValues(t *testing.T) {
	tests := []struct {
		give     []string
		wantCode int
		secret   string
	}{
		{give: []string{"nosuchcommand"}, wantCode: 2},
		{give: []string{"demo", "--json=7391"}, wantCode: 2, secret: "7391"},
		{give: []string{"demo", "extra-4111111111111111"}, wantCode: 2, secret: "4111111111111111"},
		{give: []string{"check-config"}, wantCode: 2},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tt.give, &out, &errOut)
		if code != tt.wantCode {
			t.Errorf("run(%v) = %d, want %d (stderr %q)", tt.give[0], code, tt.wantCode, errOut.String())
		}
		if lines := strings.Count(strings.TrimSpace(errOut.String()), "\n"); lines != 0 {
			t.Errorf("run(%v) wrote %d lines to stderr, want one", tt.give[0], lines+1)
		}
		if tt.secret != "" && strings.Contains(errOut.String(), tt.secret) {
			t.Errorf("run(%v): stderr repeats the value given", tt.give[0])
		}
	}
}
