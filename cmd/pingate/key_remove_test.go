package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestKeyRemoveRecordsEveryVersion: key remove deletes every version of a
// key, and the custody log records each one with its version and KCV — the
// retired version still in its grace window as well as the current one.
func TestKeyRemoveRecordsEveryVersion(t *testing.T) {
	e := setupCeremony(t)
	v2 := e.do(t, "rotate", "--id", "zpk-1") // a generated v2; v1 stays in its grace window
	if !strings.HasPrefix(v2, "zpk-1 ZPK v2 ") {
		t.Fatalf("key rotate = %q, want zpk-1 ZPK v2 …", v2)
	}
	want := []string{"zpk-1 ZPK v1 " + tr31KCVB, v2}
	if got := e.do(t, "remove", "--id", "zpk-1"); got != "removed zpk-1" {
		t.Fatalf("key remove = %q, want removed zpk-1", got)
	}
	var got []string
	for _, line := range readLogLines(t, e.log) {
		var r struct {
			Action  string `json:"action"`
			KeyID   string `json:"key_id"`
			Usage   string `json:"usage"`
			Version int    `json:"version"`
			KCV     string `json:"kcv"`
			Who     string `json:"who"`
			Why     string `json:"why"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Action != "remove" {
			continue
		}
		if r.Who != "alice" || r.Why != "test ceremony" {
			t.Errorf("remove record of v%d: who %q, why %q; want alice, test ceremony", r.Version, r.Who, r.Why)
		}
		got = append(got, fmt.Sprintf("%s %s v%d %s", r.KeyID, r.Usage, r.Version, r.KCV))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("remove records = %q, want %q", got, want)
	}
	if got := keyLastLine(mustRunKey(t, append([]string{"log", "verify"}, e.flags(false)...)...)); got != "ok 6 records" {
		t.Errorf("key log verify --store = %q, want ok 6 records", got)
	}
}
