package pinblock

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Keyring errors that callers branch on.
var (
	// ErrKeyExists: Add was given a key id the ring already holds.
	ErrKeyExists = errors.New("key already exists")
	// ErrKeyVersion: Rotate was given a version other than current+1, or a key
	// had a version below 1.
	ErrKeyVersion = errors.New("wrong key version")
	// ErrKeyExpired: the version asked for was rotated out and its grace
	// window is over.
	ErrKeyExpired = errors.New("key version past its grace window")
)

// Keyring holds keys in memory by id, each id with its versions: the current
// one, and previous ones that stay usable for deciphering until their grace
// window ends. It is safe for concurrent use; lookups (the hot path) take a
// read lock only.
//
// The ring owns the keys given to it: Remove, Prune and Zeroize zeroize them,
// and because a Key shares its bytes with every copy, the caller's copies stop
// working too. Callers must not zeroize a key they have added.
type Keyring struct {
	grace time.Duration

	mu   sync.RWMutex
	keys map[string]*ringEntry
	// gen counts the changes to keys; every mutator bumps it under mu, so a
	// prepared translation (Translator) knows when its resolved keys are stale.
	gen atomic.Uint64
}

// generation is the ring's change counter (see Keyring.gen).
func (r *Keyring) generation() uint64 { return r.gen.Load() }

type ringEntry struct {
	// versions is ordered oldest first; the last one is current.
	versions []ringKey
}

type ringKey struct {
	key     Key
	created time.Time
	// until is zero for the current version; for a previous one, the instant
	// from which it may no longer be used.
	until time.Time
}

func (e *ringEntry) current() *ringKey { return &e.versions[len(e.versions)-1] }

// usable reports whether v may still be used at now.
func (v *ringKey) usable(now time.Time) bool {
	return v.until.IsZero() || now.Before(v.until)
}

// NewKeyring returns an empty ring in which a rotated-out version stays usable
// for deciphering for grace after the rotation. A negative grace counts as 0.
func NewKeyring(grace time.Duration) *Keyring {
	return &Keyring{grace: max(grace, 0), keys: make(map[string]*ringEntry)}
}

// Grace is the window during which a rotated-out version stays usable.
func (r *Keyring) Grace() time.Duration { return r.grace }

// Add adds k as the first held version of its id, at whatever version k
// carries (1 for a new key, or an explicit later one for a key restored from a
// store). It returns ErrInvalidKey for a zero or zeroized key, ErrKeyVersion
// for a version below 1, and ErrKeyExists if the id is already held (use
// Rotate). The version's creation time is recorded as time.Now(). On success
// the ring owns k (see Keyring).
func (r *Keyring) Add(k Key) error {
	if !k.Valid() {
		return fmt.Errorf("%w: keyring add: key not loaded or zeroized", ErrInvalidKey)
	}
	if k.Version() < 1 {
		return fmt.Errorf("%w: keyring add: key %s: version %d below 1", ErrKeyVersion, k.ID(), k.Version())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.keys[k.ID()]; ok {
		return fmt.Errorf("%w: %s", ErrKeyExists, k.ID())
	}
	r.keys[k.ID()] = &ringEntry{versions: []ringKey{{key: k, created: time.Now()}}}
	r.gen.Add(1)
	return nil
}

// Rotate makes k the current version of its id. k.Version() must be the
// current version + 1 (ErrKeyVersion) and k must keep the id's usage and
// algorithm (ErrKeyUsage, ErrKeyAlgorithmMismatch); an unknown id is
// ErrUnknownKey. The version it replaces stays usable for deciphering until
// now + the ring's grace; versions whose grace is over by now are zeroized and
// dropped. On success the ring owns k.
func (r *Keyring) Rotate(k Key, now time.Time) error {
	if !k.Valid() {
		return fmt.Errorf("%w: keyring rotate: key not loaded or zeroized", ErrInvalidKey)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.keys[k.ID()]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownKey, k.ID())
	}
	cur := e.current()
	switch {
	case k.Version() != cur.key.Version()+1:
		return fmt.Errorf("%w: rotate %s: got version %d, want %d", ErrKeyVersion, k.ID(), k.Version(), cur.key.Version()+1)
	case k.Usage() != cur.key.Usage():
		return fmt.Errorf("%w: rotate %s: usage %s, want %s", ErrKeyUsage, k.ID(), k.Usage(), cur.key.Usage())
	case k.Algorithm() != cur.key.Algorithm():
		return fmt.Errorf("%w: rotate %s: algorithm %s, want %s", ErrKeyAlgorithmMismatch, k.ID(), k.Algorithm(), cur.key.Algorithm())
	}
	cur.until = now.Add(r.grace)
	e.versions = append(e.versions, ringKey{key: k, created: now})
	e.prune(now)
	r.gen.Add(1)
	return nil
}

// prune zeroizes and drops the previous versions no longer usable at now.
func (e *ringEntry) prune(now time.Time) int {
	n := 0
	e.versions = slices.DeleteFunc(e.versions, func(v ringKey) bool {
		if v.usable(now) {
			return false
		}
		v.key.Zeroize()
		n++
		return true
	})
	return n
}

// Lookup returns the key ref names: the current version when ref.Version is 0,
// otherwise that exact version, which for a previous version must still be in
// its grace window at now (ErrKeyExpired). An id or version not held is
// ErrUnknownKey. The returned Key is shared with the ring: do not zeroize it.
func (r *Keyring) Lookup(ref KeyRef, now time.Time) (Key, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, _, err := r.lookupLocked(ref, func() time.Time { return now })
	return k, err
}

// lookupLocked is Lookup with r.mu held; it reads the clock only for an
// explicit version. until is when the key found stops being usable: zero
// for a current version.
func (r *Keyring) lookupLocked(ref KeyRef, now func() time.Time) (k Key, until time.Time, err error) {
	e, ok := r.keys[ref.ID]
	if !ok {
		return Key{}, until, fmt.Errorf("%w: %s", ErrUnknownKey, ref.ID)
	}
	if ref.Version == 0 {
		return e.current().key, until, nil
	}
	for i := range e.versions {
		v := &e.versions[i]
		if v.key.Version() != ref.Version {
			continue
		}
		if !v.usable(now()) {
			return Key{}, until, fmt.Errorf("%w: %s v%d", ErrKeyExpired, ref.ID, ref.Version)
		}
		return v.key, v.until, nil
	}
	return Key{}, until, fmt.Errorf("%w: %s v%d", ErrUnknownKey, ref.ID, ref.Version)
}

// routeKeys are the keys of one translation, resolved under one read lock:
// the deciphering candidates (current version first), the enciphering key,
// the ring generation they were read at, and the instant the first of them
// leaves its grace window (zero when none will).
type routeKeys struct {
	from  [maxVersions]Key
	nfrom int
	to    Key
	gen   uint64
	until time.Time
}

// valid reports whether rk still describes the ring at generation gen; now
// is read only when one of its keys has a grace window running.
func (rk *routeKeys) valid(gen uint64, now func() time.Time) bool {
	return rk.gen == gen && (rk.until.IsZero() || now().Before(rk.until))
}

// earliest folds the end of a grace window into rk.until.
func (rk *routeKeys) earliest(t time.Time) {
	if !t.IsZero() && (rk.until.IsZero() || t.Before(rk.until)) {
		rk.until = t
	}
}

// translationKeys resolves both keys of a translation under one read lock
// into rk: the deciphering candidates for from (the exact version if from
// names one, else the current version and the previous ones still in their
// grace window, newest first; at most maxVersions, the oldest dropped) and
// the enciphering key for to (see Lookup). fromErr is ErrUnknownKey or
// ErrKeyExpired for from; toErr the same for to. The clock (now) is read only
// when a version or a grace window needs it.
func (r *Keyring) translationKeys(rk *routeKeys, from, to KeyRef, now func() time.Time) (fromErr, toErr error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rk.gen = r.gen.Load()
	if from.Version != 0 {
		var k Key
		var until time.Time
		if k, until, fromErr = r.lookupLocked(from, now); fromErr == nil {
			rk.from[0], rk.nfrom = k, 1
			rk.earliest(until)
		}
	} else if r.decipheringLocked(rk, from.ID, now); rk.nfrom == 0 {
		fromErr = fmt.Errorf("%w: %s", ErrUnknownKey, from.ID)
	}
	var until time.Time
	rk.to, until, toErr = r.lookupLocked(to, now)
	rk.earliest(until)
	return fromErr, toErr
}

// Deciphering returns the versions of id that may decipher at now: the
// current one first, then previous ones still within their grace window,
// newest first. It returns nil for an id the ring does not hold.
func (r *Keyring) Deciphering(id string, now time.Time) []Key {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.keys[id]
	if !ok {
		return nil
	}
	out := make([]Key, 0, len(e.versions))
	for i := len(e.versions) - 1; i >= 0; i-- {
		if v := &e.versions[i]; v.usable(now) {
			out = append(out, v.key)
		}
	}
	return out
}

// decipheringLocked is Deciphering without allocation for the translation
// hot path, with r.mu held: it sets rk.from and rk.nfrom (newest first, at
// most maxVersions) and folds the grace windows into rk.until. It reads the
// clock (now) only when id has previous versions: on some virtual machines
// time.Now costs as much as a quarter of a translation.
func (r *Keyring) decipheringLocked(rk *routeKeys, id string, now func() time.Time) {
	rk.nfrom = 0
	e, ok := r.keys[id]
	if !ok {
		return
	}
	last := len(e.versions) - 1
	rk.from[0], rk.nfrom = e.versions[last].key, 1
	if last == 0 {
		return
	}
	t := now()
	for i := last - 1; i >= 0 && rk.nfrom < maxVersions; i-- {
		if v := &e.versions[i]; v.usable(t) {
			rk.from[rk.nfrom] = v.key
			rk.nfrom++
			rk.earliest(v.until)
		}
	}
}

// Remove zeroizes every version of id and forgets it; an id not held is
// ErrUnknownKey.
func (r *Keyring) Remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.keys[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownKey, id)
	}
	for _, v := range e.versions {
		v.key.Zeroize()
	}
	delete(r.keys, id)
	r.gen.Add(1)
	return nil
}

// List describes every held version (including previous ones still in their
// grace window or not yet pruned), ordered by id then version. It never
// reveals key bytes.
func (r *Keyring) List() []KeyInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]KeyInfo, 0, len(r.keys))
	for _, e := range r.keys {
		for _, v := range e.versions {
			out = append(out, KeyInfo{
				ID:        v.key.ID(),
				Usage:     v.key.Usage(),
				Algorithm: v.key.Algorithm(),
				Length:    v.key.Len(),
				Version:   v.key.Version(),
				KCV:       v.key.KCV(),
				Created:   v.created,
			})
		}
	}
	slices.SortFunc(out, func(a, b KeyInfo) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	return out
}

// Prune zeroizes and drops every previous version whose grace window is over
// at now, and returns how many it dropped. Current versions are never pruned.
func (r *Keyring) Prune(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.keys {
		n += e.prune(now)
	}
	if n > 0 {
		r.gen.Add(1)
	}
	return n
}

// Zeroize zeroizes every key and empties the ring; call it on shutdown. It is
// best-effort (see Key.Zeroize).
func (r *Keyring) Zeroize() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.keys {
		for _, v := range e.versions {
			v.key.Zeroize()
		}
		delete(r.keys, id)
	}
	r.gen.Add(1)
}
