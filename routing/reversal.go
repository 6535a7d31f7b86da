package routing

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Reversal is a 0420 reversal advice owed to an issuer for a request that
// timed out after it may have reached the issuer. It is persisted before the
// acquirer gets its 91 and deleted only when the issuer acknowledges it (0430),
// so a restart does not forget it. It carries the PAN because DE 2 of the
// advice needs it: the store's directory is as sensitive as the key store.
type Reversal struct {
	ID        string    `json:"id"`
	Issuer    string    `json:"issuer"`
	Operation Operation `json:"operation"`
	PAN       string    `json:"pan"`
	STAN      string    `json:"stan"`     // of the original request to the issuer
	Transmit  string    `json:"transmit"` // DE 7 of the original request
	Terminal  string    `json:"terminal"`
	Merchant  string    `json:"merchant"`
	RRN       string    `json:"rrn"`
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
}

// ReversalStore persists reversals until they are acknowledged.
type ReversalStore interface {
	Put(ctx context.Context, r Reversal) error
	Delete(ctx context.Context, id string) error
	Pending(ctx context.Context) ([]Reversal, error)
}

// MemoryReversalStore keeps reversals in memory: for tests and for the
// embedded default only, where a restart may forget them.
type MemoryReversalStore struct {
	mu sync.Mutex
	m  map[string]Reversal
}

// NewMemoryReversalStore returns an empty store.
func NewMemoryReversalStore() *MemoryReversalStore {
	return &MemoryReversalStore{m: map[string]Reversal{}}
}

// Put stores r, replacing one with the same id.
func (s *MemoryReversalStore) Put(_ context.Context, r Reversal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r.ID] = r
	return nil
}

// Delete removes id; a missing id is not an error.
func (s *MemoryReversalStore) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

// Pending lists stored reversals, oldest first.
func (s *MemoryReversalStore) Pending(context.Context) ([]Reversal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Reversal, 0, len(s.m))
	for _, r := range s.m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Reversal) int { return a.Created.Compare(b.Created) })
	return out, nil
}
