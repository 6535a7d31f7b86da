package reversalstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pingate/pinblock"
	"pingate/pinblock/devkeys"
	"pingate/routing"
)

// testSealer is the data key the gateway derives on the development keys.
func testSealer(t *testing.T) *pinblock.DataSealer {
	t.Helper()
	ring := pinblock.NewKeyring(0)
	if err := devkeys.Load(ring); err != nil {
		t.Fatal(err)
	}
	s, err := pinblock.NewSoftwareModule(ring, pinblock.PINPolicy{}, nil).DataSealer(pinblock.KeyRef{ID: devkeys.ATMZMK}, "reversals")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStoreFilesHoldNoClearPAN: advices are put, some deleted, the memtable
// flushed to an sstable and more put after it; then no file of the store
// (WAL, sstables, MANIFEST, OPTIONS) contains any of the PANs, in ASCII or
// in BCD, and the advices still read back after a reopen.
func TestStoreFilesHoldNoClearPAN(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, testSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	pans := []string{"4761739001010119", "6228481200000017", "5413330089010434"}
	now := time.Now().UTC()
	for i := 0; i < 300; i++ {
		pan := pans[i%len(pans)]
		if err := s.Put(ctx, routing.Reversal{ID: "r" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Issuer: "ssbank", PAN: pan, Created: now}); err != nil {
			t.Fatal(err)
		}
		if i == 150 {
			db, release, err := s.db.Acquire()
			if err != nil {
				t.Fatal(err)
			}
			err = db.Flush()
			release()
			if err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			if err := s.Delete(ctx, "r"+string(rune('a'+i%26))+string(rune('a'+i/26))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, sst := 0, 0
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if filepath.Ext(p) == ".sst" {
			sst++
		}
		for i, pan := range pans {
			bcd := make([]byte, len(pan)/2)
			for k := range bcd {
				bcd[k] = (pan[2*k]-'0')<<4 | (pan[2*k+1] - '0')
			}
			if bytes.Contains(b, []byte(pan)) || bytes.Contains(b, bcd) {
				t.Errorf("%s holds test PAN #%d in clear", filepath.Base(p), i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if sst == 0 {
		t.Fatalf("no sstable among %d files: the flush did not reach the disk, the test proves less", files)
	}
	s, err = Open(dir, testSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Pending(ctx)
	if err != nil || len(got) != 200 {
		t.Fatalf("Pending after reopen = %d advices, %v; want 200", len(got), err)
	}
	if got[0].PAN == "" {
		t.Fatal("an advice read back without its PAN")
	}
}
