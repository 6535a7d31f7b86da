package pinblock

// Replace makes the keys of next the keys of r in one step, under r's write
// lock: a lookup or translation sees either every old key or every new one,
// never a mix. It is how a running gateway reloads its key store (hot
// reload): the caller loads the store into a fresh ring and hands it here.
//
// An id whose current version in r is newer than its current version in next
// keeps r's versions: a key exchanged online since next's source was written
// (an acquirer's 0800 key change) is never rolled back by a reload. Every
// other id takes next's versions; an id next does not hold is dropped.
//
// next is left empty and must not be used again. The versions r no longer
// holds are moved into the returned ring instead of being zeroized at once,
// because a translation that looked them up before the swap may still be
// running: the caller zeroizes the returned ring (Zeroize) once no request
// can still use them, e.g. after the request timeout. r's grace window is
// unchanged; versions from next keep the windows they were loaded with.
func (r *Keyring) Replace(next *Keyring) (retired *Keyring) {
	retired = NewKeyring(r.grace)
	if next == r {
		return retired
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next.mu.Lock()
	defer next.mu.Unlock()
	keep := make(map[string]*ringEntry, len(next.keys))
	for id, n := range next.keys {
		if o, ok := r.keys[id]; ok && o.current().key.Version() > n.current().key.Version() {
			keep[id] = o
			retired.keys[id] = n // the older versions from next are unused
			continue
		}
		keep[id] = n
	}
	for id, o := range r.keys {
		if keep[id] != o {
			retired.keys[id] = o
		}
	}
	r.keys = keep
	r.gen.Add(1)
	next.keys = make(map[string]*ringEntry)
	next.gen.Add(1)
	return retired
}
