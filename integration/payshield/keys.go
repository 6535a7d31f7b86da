package payshield

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"pingate/pinblock"
)

// Key is a key as the gateway holds it in HSM mode: a token enciphered
// under the HSM's LMK, and the check value the HSM reported. The token is
// useless without the HSM; no clear key exists outside it.
type Key struct {
	ID        string             `json:"id"`
	Version   int                `json:"version"`
	Usage     pinblock.Usage     `json:"usage"`
	Algorithm pinblock.Algorithm `json:"algorithm"`
	Length    int                `json:"length"` // bytes: 16 double, 24 triple
	// Token is the key under the LMK as the HSM writes it: a scheme letter
	// (U double-length variant, T triple-length variant, X double-length
	// X9.17) and hex, e.g. "U" + 32 hex digits; under a key-block LMK a
	// Thales key block, "S" and the block (see BlockHeader).
	Token   string    `json:"token"`
	KCV     string    `json:"kcv"`
	Created time.Time `json:"created"`
	// Until is the end of this version's grace window once a later version
	// replaced it; zero while it is current.
	Until time.Time `json:"until,omitzero"`
}

// Info is the key's description without its token.
func (k Key) Info() pinblock.KeyInfo {
	return pinblock.KeyInfo{ID: k.ID, Usage: k.Usage, Algorithm: k.Algorithm, Length: k.Length, Version: k.Version, KCV: k.KCV, Created: k.Created}
}

// String shows id, usage, version and KCV; the token is not secret, but it
// has no business in logs either.
func (k Key) String() string {
	return fmt.Sprintf("key(%s %s v%d kcv=%s)", k.ID, k.Usage, k.Version, k.KCV)
}

// Keys is the set of LMK-enciphered keys a Module translates with, by id and
// version. It is safe for concurrent use; Generation changes whenever a key
// is added or rotated, so prepared routes resolve again.
type Keys struct {
	grace time.Duration
	now   func() time.Time

	mu      sync.RWMutex
	byID    map[string][]Key // ascending version
	gen     atomic.Uint64
	persist func([]Key) error // see SetPersist; under mu
}

// SetPersist has every later Add hand save the whole key set as it will be
// after the change (List order) before the change is made: a failing save
// fails the Add, and the set stays as it was. SaveKeyFile is the usual
// save. Keys added before SetPersist are not saved until the next Add.
func (s *Keys) SetPersist(save func([]Key) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.persist = save
}

// NewKeys returns an empty set whose rotated-out versions decipher for grace.
func NewKeys(grace time.Duration) *Keys {
	return &Keys{grace: max(grace, 0), now: time.Now, byID: map[string][]Key{}}
}

// Add adds version 1 of a new id (pinblock.ErrKeyExists if held), or with
// rotate the next version of a held one (pinblock.ErrUnknownKey if none;
// usage and algorithm must match).
func (s *Keys) Add(k Key, rotate bool) (Key, error) {
	if k.ID == "" || k.Token == "" {
		return Key{}, fmt.Errorf("%w: key without id or token", pinblock.ErrInvalidKey)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.byID[k.ID]
	if !rotate {
		if len(vs) > 0 {
			return Key{}, fmt.Errorf("%w: %s", pinblock.ErrKeyExists, k.ID)
		}
		if k.Version == 0 {
			k.Version = 1
		}
	} else {
		if len(vs) == 0 {
			return Key{}, fmt.Errorf("%w: %s", pinblock.ErrUnknownKey, k.ID)
		}
		cur := vs[len(vs)-1]
		if cur.Usage != k.Usage {
			return Key{}, fmt.Errorf("%w: %s is a %s, not a %s", pinblock.ErrKeyUsage, k.ID, cur.Usage, k.Usage)
		}
		if cur.Algorithm != k.Algorithm {
			return Key{}, fmt.Errorf("%w: %s", pinblock.ErrKeyAlgorithmMismatch, k.ID)
		}
		// A copy: the held versions change only once the save succeeded.
		vs = append([]Key(nil), vs...)
		vs[len(vs)-1].Until = s.now().Add(s.grace)
		k.Version = cur.Version + 1
	}
	if k.Created.IsZero() {
		k.Created = s.now().UTC()
	}
	vs = append(vs, k)
	if s.persist != nil {
		next := make(map[string][]Key, len(s.byID)+1)
		for id, v := range s.byID {
			next[id] = v
		}
		next[k.ID] = vs
		if err := s.persist(sortedKeys(next)); err != nil {
			return Key{}, fmt.Errorf("%s v%d not taken: save the key set: %w", k.ID, k.Version, err)
		}
	}
	s.byID[k.ID] = vs
	s.gen.Add(1)
	return k, nil
}

// Generation changes with every Add.
func (s *Keys) Generation() uint64 { return s.gen.Load() }

// Lookup returns the key ref names: an exact version, or with Version 0
// the current one.
func (s *Keys) Lookup(ref pinblock.KeyRef) (Key, error) {
	c, err := s.candidates(ref)
	if err != nil {
		return Key{}, err
	}
	return c[0], nil
}

// candidates returns the keys that may decipher for ref: the exact version,
// or the current one followed by the previous ones still in grace.
func (s *Keys) candidates(ref pinblock.KeyRef) ([]Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	vs := s.byID[ref.ID]
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %s", pinblock.ErrUnknownKey, ref.ID)
	}
	now := s.now()
	if ref.Version != 0 {
		for _, k := range vs {
			if k.Version == ref.Version {
				if !k.Until.IsZero() && !now.Before(k.Until) {
					return nil, fmt.Errorf("%w: %s v%d", pinblock.ErrKeyExpired, ref.ID, ref.Version)
				}
				return []Key{k}, nil
			}
		}
		return nil, fmt.Errorf("%w: %s v%d", pinblock.ErrUnknownKey, ref.ID, ref.Version)
	}
	out := []Key{vs[len(vs)-1]}
	for i := len(vs) - 2; i >= 0; i-- {
		if now.Before(vs[i].Until) {
			out = append(out, vs[i])
		}
	}
	return out, nil
}

// List describes every held version, by id then version.
func (s *Keys) List() []Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedKeys(s.byID)
}

func sortedKeys(byID map[string][]Key) []Key {
	var out []Key
	for _, vs := range byID {
		out = append(out, vs...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Version < out[j].Version
	})
	return out
}
