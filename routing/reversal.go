package routing

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Reversal is a 0420 reversal advice for a request written to an issuer.
//
// It is owed ahead (write-ahead): IssuerLinks.Send persists it before the
// request is written to the link and holds it while the request is in
// flight. It is discharged (deleted) when the issuer declines or when the
// flow has the outcome event in the journal; otherwise (a timeout, an
// unreadable answer, an outcome the journal could not take, or a process that
// died with it held) it is sent until the issuer acknowledges it (0430), also
// after a restart. It carries the PAN because DE 2 of the advice needs it; a
// ReversalStore that persists it must encipher it (PCI DSS 3.5).
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

	// Record asks for the acknowledged reversal to be recorded as an
	// outcome event (outcome reversed, reason outcome_not_recorded): set on
	// an advice owed ahead, whose operation may have no event, or an event
	// that says approved. Reversals the flow records itself (an issuer
	// timeout, an acquirer's reversal) do not set it.
	Record bool `json:"record,omitempty"`
	// EventID is the id of the operation's outcome event, which the
	// recorded reversal names in Reverses.
	EventID    string  `json:"event_id,omitempty"`
	Channel    Channel `json:"channel,omitempty"`
	Acquirer   string  `json:"acquirer,omitempty"`
	Teller     string  `json:"teller,omitempty"`
	Supervisor string  `json:"supervisor,omitempty"`
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
