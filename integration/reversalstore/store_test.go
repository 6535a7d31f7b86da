package reversalstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"pingate/routing"
)

func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, testSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i, id := range []string{"b", "a", "c"} {
		if err := s.Put(ctx, routing.Reversal{ID: id, Issuer: "ssbank", Created: now.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, testSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "b" || got[1].ID != "c" {
		t.Fatalf("Pending() after reopen = %+v, want b then c", got)
	}
}

// TestStoreReadsBothForms: Pending reads every field of an advice Put now
// stores in its binary form, and an advice an earlier version stored as
// JSON, side by side (a store upgraded in place holds both).
func TestStoreReadsBothForms(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), testSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	created := time.Date(2026, 12, 4, 23, 1, 2, 345, time.UTC)
	binary := routing.Reversal{ID: "new", Issuer: "ssbank", Operation: routing.OpChange, PAN: "6228481200000000015",
		STAN: "000123", Transmit: "1204230102", Terminal: "ATM00001", Merchant: "BRANCH000000001", RRN: "433823000123",
		Created: created, Attempts: 2, Record: true, EventID: "ev-1", Channel: routing.ChannelATM, Acquirer: "100001",
		Teller: "T01", Supervisor: "S01"}
	if err := s.Put(ctx, binary); err != nil {
		t.Fatal(err)
	}
	old := routing.Reversal{ID: "old", Issuer: "ssbank", Operation: routing.OpReset, STAN: "000124", Created: created.Add(time.Second)}
	plain, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.sealer.Seal(plain, key(old.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.write(ctx, func(b *pebble.Batch) error { return b.Set(key(old.ID), sealed, nil) }); err != nil {
		t.Fatal(err)
	}

	got, err := s.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Pending() = %d advices, want 2", len(got))
	}
	for i, want := range []routing.Reversal{binary, old} {
		if !got[i].Created.Equal(want.Created) {
			t.Errorf("advice %s: Created = %v, want %v", want.ID, got[i].Created, want.Created)
		}
		got[i].Created, want.Created = time.Time{}, time.Time{}
		if got[i] != want {
			t.Errorf("advice %s read back differs from what was stored", want.ID) // the values carry a PAN
		}
	}
}
