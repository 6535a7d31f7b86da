package routing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Tokenizer turns a PAN into a card token: HMAC-SHA-256 under a secret key,
// truncated to 128 bits, hex. The back office joins a card's events by token
// without ever seeing the PAN; without the key the token cannot be reversed or
// recomputed from a guessed PAN.
type Tokenizer struct {
	pool sync.Pool
}

// NewTokenizer copies key; it must hold at least 32 bytes.
func NewTokenizer(key []byte) *Tokenizer {
	k := append([]byte(nil), key...)
	return &Tokenizer{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// Token returns the card token of pan.
func (t *Tokenizer) Token(pan string) string {
	h := t.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(pan))
	var sum [sha256.Size]byte
	out := h.Sum(sum[:0])
	t.pool.Put(h)
	return hex.EncodeToString(out[:16])
}
