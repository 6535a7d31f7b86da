// Package reversalstore persists the reversal advices pingate owes issuers
// (routing.ReversalStore) in an embedded pebble database, so that a restart
// resends what was not yet acknowledged. Every write is synced.
package reversalstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"

	"pingate/routing"
)

// Store is a pebble-backed routing.ReversalStore.
type Store struct {
	db *pebble.DB
}

var _ routing.ReversalStore = (*Store)(nil)

// Open opens or creates the store in dir. The directory holds PANs (DE 2 of
// each advice): protect it like the key store.
func Open(dir string) (*Store, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return nil, fmt.Errorf("open reversal store: %w", err)
	}
	return &Store{db: db}, nil
}

func key(id string) []byte { return []byte("rev/" + id) }

// Put stores r durably.
func (s *Store) Put(_ context.Context, r routing.Reversal) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Set(key(r.ID), v, pebble.Sync)
}

// Delete removes an acknowledged reversal.
func (s *Store) Delete(_ context.Context, id string) error {
	return s.db.Delete(key(id), pebble.Sync)
}

// Pending lists the stored reversals, oldest first.
func (s *Store) Pending(context.Context) ([]routing.Reversal, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte("rev/"), UpperBound: []byte("rev0")})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []routing.Reversal
	for it.First(); it.Valid(); it.Next() {
		var r routing.Reversal
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			return nil, fmt.Errorf("reversal store entry unreadable: %w", err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b routing.Reversal) int { return a.Created.Compare(b.Created) })
	return out, it.Error()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

type quiet struct{}

func (quiet) Infof(string, ...any)           {}
func (quiet) Errorf(string, ...any)          {}
func (quiet) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
