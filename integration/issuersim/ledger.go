package issuersim

import (
	"crypto/subtle"
	"hash/maphash"
	"sync"

	"pingate/iso8583"
)

// ledger keeps each card's PIN verification data — a keyed hash of PAN and
// PIN under the simulator's PIN verification key, never the PIN — and its
// wrong-PIN counter. Cards never touched since start are not stored, so
// memory grows with the cards used, not with the population; a touched card
// whose PIN was never changed keeps no verification data either: its PIN is
// still the population's initial PIN, derived again (one keyed hash) only
// when a PIN is verified against it. A change or reset of a card that was
// never touched thus costs one hash (the new PIN's verification data), a
// change of one two.
type ledger struct {
	pop      Population
	pvdOf    func(pan, pin string) [32]byte
	maxTries int
	seed     maphash.Seed
	shards   [64]shard
}

type shard struct {
	mu    sync.Mutex
	cards map[string]*cardState
}

type cardState struct {
	pvd     [32]byte // HMAC-SHA-256(PVK, PAN "|" PIN); unused while initial
	initial bool     // the PIN is the population's initial PIN (pvd not computed)
	tries   int
	prev    *cardState // state before the last change or reset, for a reversal
	ref     string     // match key of the request that made the last change
}

// newLedger keeps PIN verification data computed by pvd.
func newLedger(pop Population, pvd func(pan, pin string) [32]byte, maxTries int) *ledger {
	l := &ledger{pop: pop, pvdOf: pvd, maxTries: maxTries, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].cards = map[string]*cardState{}
	}
	return l
}

func (l *ledger) pvd(pan, pin string) [32]byte { return l.pvdOf(pan, pin) }

// card returns the state of pan with its shard locked; nil if pan is not a
// card of the population. The caller unlocks sh.
func (l *ledger) card(pan string) (*cardState, *shard) {
	sh := &l.shards[maphash.String(l.seed, pan)%uint64(len(l.shards))]
	sh.mu.Lock()
	c, ok := sh.cards[pan]
	if !ok {
		if !l.pop.Contains(pan) {
			return nil, sh
		}
		c = &cardState{initial: true}
		sh.cards[pan] = c
	}
	return c, sh
}

// change: the current PIN must verify; three wrong tries lock the card.
func (l *ledger) change(pan, oldPIN, newPIN, ref string) string {
	c, sh := l.card(pan)
	defer sh.mu.Unlock()
	if c == nil {
		return iso8583.RCNoSuchCard
	}
	if c.tries >= l.maxTries {
		return iso8583.RCPINTriesExceeded
	}
	if !l.verify(c, pan, oldPIN) {
		c.tries++
		if c.tries >= l.maxTries {
			return iso8583.RCPINTriesExceeded
		}
		return iso8583.RCIncorrectPIN
	}
	prev := *c
	prev.prev = nil
	c.prev, c.ref = &prev, ref
	c.pvd, c.initial = l.pvd(pan, newPIN), false
	c.tries = 0
	return iso8583.RCApproved
}

// verify reports whether pin is the card's PIN, in constant time: against
// the initial PIN of a card never changed, else against its verification
// data.
func (l *ledger) verify(c *cardState, pan, pin string) bool {
	if c.initial {
		return subtle.ConstantTimeCompare([]byte(pin), []byte(l.pop.InitialPIN(pan))) == 1
	}
	want := l.pvd(pan, pin)
	return subtle.ConstantTimeCompare(want[:], c.pvd[:]) == 1
}

// reset sets a new PIN and unlocks, after the branch's identity check.
func (l *ledger) reset(pan, newPIN, ref string) string {
	c, sh := l.card(pan)
	defer sh.mu.Unlock()
	if c == nil {
		return iso8583.RCNoSuchCard
	}
	prev := *c
	prev.prev = nil
	c.prev, c.ref = &prev, ref
	c.pvd, c.initial = l.pvd(pan, newPIN), false
	c.tries = 0
	return iso8583.RCApproved
}

// unblock clears the wrong-PIN counter.
func (l *ledger) unblock(pan string) string {
	c, sh := l.card(pan)
	defer sh.mu.Unlock()
	if c == nil {
		return iso8583.RCNoSuchCard
	}
	c.tries = 0
	return iso8583.RCApproved
}

// reverse undoes the change or reset made by the request ref, if it was the
// card's last one. It reports whether anything was undone.
func (l *ledger) reverse(pan, ref string) bool {
	c, sh := l.card(pan)
	defer sh.mu.Unlock()
	if c == nil || c.prev == nil || c.ref != ref {
		return false
	}
	*c = *c.prev
	return true
}
