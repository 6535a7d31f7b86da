package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"pingate/pinblock"
	"strings"
	"testing"
	"time"
)

// writeCustodyLog appends n records to a new log and returns its path and head.
func writeCustodyLog(t *testing.T, n int) (string, CustodyHead) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "custody.log")
	l, err := OpenCustodyLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		rec := CustodyRecord{
			Time: base.Add(time.Duration(i) * time.Minute), Who: "alice", Action: ActionImport,
			KeyID: "zpk-" + string(rune('a'+i)), Usage: pinblock.UsageZPK, Version: 1, KCV: "CB9DEA",
			Why: "ceremony 2024-03 <step " + string(rune('1'+i)) + ">", Under: "zmk-1",
		}
		if i == 1 {
			rec.Action, rec.Under, rec.ComponentKCVs = ActionCombine, UnderComponents, []string{"57C409", "F4B08D"}
		}
		got, err := l.Append(rec)
		if err != nil {
			t.Fatalf("Append() error = %v", err)
		}
		if got.Seq != int64(i+1) {
			t.Fatalf("Append() seq = %d, want %d", got.Seq, i+1)
		}
	}
	return path, l.Head()
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestCustodyLogVerifies(t *testing.T) {
	path, head := writeCustodyLog(t, 5)
	got, err := VerifyCustodyLog(path)
	if err != nil {
		t.Fatalf("VerifyCustodyLog() error = %v", err)
	}
	if got != head || got.Seq != 5 {
		t.Errorf("VerifyCustodyLog() = %+v, want %+v", got, head)
	}
	if _, err := VerifyCustodyLogHead(path, head); err != nil {
		t.Errorf("VerifyCustodyLogHead(own head) error = %v", err)
	}
	// Reopen and append: the chain continues.
	l, err := OpenCustodyLog(path)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := l.Append(CustodyRecord{Who: "bob", Action: ActionRemove, KeyID: "zpk-a", Why: "retired"})
	l.Close()
	if err != nil || rec.Seq != 6 || rec.PrevHash != head.Hash {
		t.Fatalf("Append after reopen = seq %d prev %s, %v; want seq 6 prev %s", rec.Seq, rec.PrevHash, err, head.Hash)
	}
	if got, err := VerifyCustodyLog(path); err != nil || got.Seq != 6 {
		t.Errorf("VerifyCustodyLog() = %+v, %v, want seq 6", got, err)
	}
}

func TestCustodyLogDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(lines []string) []string
		wantSeq int64
	}{
		{"field altered", func(l []string) []string {
			l[2] = strings.Replace(l[2], `"who":"alice"`, `"who":"mallory"`, 1)
			return l
		}, 3},
		{"KCV altered", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"kcv":"CB9DEA"`, `"kcv":"CB9DEB"`, 1)
			return l
		}, 4},
		{"whitespace added", func(l []string) []string {
			l[1] = strings.Replace(l[1], `{"seq"`, `{ "seq"`, 1)
			return l
		}, 2},
		{"unknown field added", func(l []string) []string {
			l[0] = strings.Replace(l[0], `{"seq"`, `{"note":"x","seq"`, 1)
			return l
		}, 1},
		{"two records reordered", func(l []string) []string {
			l[1], l[2] = l[2], l[1]
			return l
		}, 2},
		{"record removed", func(l []string) []string {
			return append(l[:2], l[3:]...)
		}, 3},
		{"first record removed", func(l []string) []string {
			return l[1:]
		}, 1},
		{"truncated in the middle of a record", func(l []string) []string {
			return append(l[:3], l[3][:len(l[3])/2])
		}, 4},
		{"record replaced by a copy of another", func(l []string) []string {
			l[4] = l[3]
			return l
		}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := writeCustodyLog(t, 5)
			writeLines(t, path, tt.edit(readLines(t, path)))
			_, err := VerifyCustodyLog(path)
			var ce *CustodyError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCustodyLog) {
				t.Fatalf("VerifyCustodyLog() error = %v, want a *CustodyError", err)
			}
			if ce.Seq != tt.wantSeq {
				t.Errorf("VerifyCustodyLog() bad seq = %d (%v), want %d", ce.Seq, err, tt.wantSeq)
			}
			if _, err := OpenCustodyLog(path); !errors.Is(err, ErrCustodyLog) {
				t.Errorf("OpenCustodyLog(tampered) error = %v, want ErrCustodyLog", err)
			}
		})
	}
}

func TestCustodyLogTailRemovalNeedsHead(t *testing.T) {
	path, head := writeCustodyLog(t, 5)
	lines := readLines(t, path)
	writeLines(t, path, lines[:3])
	if _, err := VerifyCustodyLog(path); err != nil {
		t.Fatalf("VerifyCustodyLog(tail removed) error = %v: a chain alone cannot see this", err)
	}
	_, err := VerifyCustodyLogHead(path, head)
	var ce *CustodyError
	if !errors.As(err, &ce) || ce.Seq != 4 {
		t.Fatalf("VerifyCustodyLogHead(tail removed) error = %v, want seq 4", err)
	}
	// A different log of the same length is caught too.
	other := filepath.Join(t.TempDir(), "other.log")
	ol, err := OpenCustodyLog(other)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := ol.Append(CustodyRecord{Who: "mallory", Action: ActionGenerate, KeyID: "k", Under: "lmk"}); err != nil {
			t.Fatal(err)
		}
	}
	ol.Close()
	writeLines(t, path, readLines(t, other))
	if _, err := VerifyCustodyLogHead(path, head); !errors.Is(err, ErrCustodyLog) {
		t.Errorf("VerifyCustodyLogHead(other log) error = %v, want ErrCustodyLog", err)
	}
}

func TestCustodyLogAppendRefuses(t *testing.T) {
	path, _ := writeCustodyLog(t, 2)
	l, err := OpenCustodyLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, rec := range []CustodyRecord{
		{Action: ActionImport, KeyID: "k"},
		{Who: "a", Action: ActionImport, KeyID: "k", Why: "line\nbreak"},
	} {
		if _, err := l.Append(rec); err == nil {
			t.Errorf("Append(%+v) error = nil, want an error", rec)
		}
	}
	// Another writer appends behind our back.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("{}\n")
	f.Close()
	if _, err := l.Append(CustodyRecord{Who: "a", Action: ActionImport, KeyID: "k"}); !errors.Is(err, ErrCustodyLog) {
		t.Errorf("Append after a foreign write error = %v, want ErrCustodyLog", err)
	}
}
