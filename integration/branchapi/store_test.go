package branchapi

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestStoresReleaseOn503: a 503 answer (nothing ran) frees the key for a
// later retry, in every store, while other answers stay the key's outcome.
func TestStoresReleaseOn503(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	tests := []struct {
		give        int
		wantClaimed bool // a later request with the key is a new first request
	}{
		{give: http.StatusServiceUnavailable, wantClaimed: true},
		{give: http.StatusOK, wantClaimed: false},
		{give: http.StatusAccepted, wantClaimed: false},
	}
	for _, tt := range tests {
		s := &store{b: newMemStore(time.Hour, 10), fpKey: []byte("k")}
		fp := s.fingerprint("/v1/pin/unblocks", []byte("body"))
		r, first, err := s.b.beginIdem(ctx, "teller", "key", fp, now)
		if err != nil || !first {
			t.Fatalf("beginIdem = %v, %v", first, err)
		}
		s.finishIdem(r, tt.give, "application/json", "", []byte("{}"))
		r2, first, err := s.b.beginIdem(ctx, "teller", "key", fp, now)
		if err != nil || first != tt.wantClaimed {
			t.Errorf("after a %d answer: beginIdem first = %v (%v), want %v", tt.give, first, err, tt.wantClaimed)
		}
		if !tt.wantClaimed && r2.status != tt.give {
			t.Errorf("after a %d answer: replay %d", tt.give, r2.status)
		}
	}
}

func TestMemStoreKeyReused(t *testing.T) {
	s := &store{b: newMemStore(time.Hour, 10), fpKey: []byte("k")}
	ctx, now := context.Background(), time.Now()
	if _, _, err := s.b.beginIdem(ctx, "teller", "key", s.fingerprint("/r", []byte("a")), now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.b.beginIdem(ctx, "teller", "key", s.fingerprint("/r", []byte("b")), now); !errors.Is(err, errKeyReused) {
		t.Errorf("same key, other body = %v, want errKeyReused", err)
	}
	if _, first, err := s.b.beginIdem(ctx, "other", "key", s.fingerprint("/r", []byte("b")), now); err != nil || !first {
		t.Errorf("same key, other identity = %v, %v, want its own first claim", first, err)
	}
}
