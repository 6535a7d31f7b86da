package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every
// gateway, simulator, client and child process a test starts is stopped by
// the test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pebble starts one at init when built with invariants, and glog
		// (pulled in by a dependency) its flush daemon; neither is ours.
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/internal/invariants.init.0.func1"),
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

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
