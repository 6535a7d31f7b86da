package redislimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyChange is the notice of an acquirer's online key change (0800/161) that
// one gateway instance took, for the others to take the same key: the key as
// the acquirer delivered it, enciphered under the ZMK every instance holds
// (a TR-31 block, or the legacy form with its KCV), never in clear. Version
// and NewKCV are what the taking instance's module made of it.
type KeyChange struct {
	ID         string    `json:"id"`                   // key label
	Usage      string    `json:"usage"`                // pinblock.Usage
	Algorithm  string    `json:"algorithm,omitempty"`  // pinblock.Algorithm of the legacy form
	ZMK        string    `json:"zmk"`                  // label of the key-encryption key
	KeyBlock   string    `json:"key_block,omitempty"`  // TR-31 block under ZMK
	Enciphered string    `json:"enciphered,omitempty"` // hex of the key under ZMK (legacy form)
	KCV        string    `json:"kcv,omitempty"`        // the acquirer's KCV of the legacy form
	Version    int       `json:"version"`              // version the taking instance made
	NewKCV     string    `json:"new_kcv"`              // check value of the new key
	Instance   string    `json:"instance"`             // the instance that took the 0800
	At         time.Time `json:"at"`                   // when it took it
}

// KeyChanges is the shared list of the latest online key change of every
// key, one Redis hash, P:{keys} (P the limits' key prefix), field = key
// label, value = the KeyChange as JSON. A later change of the same key
// replaces the earlier one; a notice older (At) than the one held is
// dropped, so a delayed retry cannot roll a key back.
type KeyChanges struct {
	rdb redis.UniversalClient
	key string
}

// NewKeyChanges keeps key change notices in rdb under prefix. The client
// stays the caller's to close.
func NewKeyChanges(rdb redis.UniversalClient, prefix string) (*KeyChanges, error) {
	if rdb == nil {
		return nil, errors.New("redislimit: key changes need a Redis client")
	}
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	return &KeyChanges{rdb: rdb, key: prefix + ":{keys}"}, nil
}

// publishScript sets field ARGV[1] to ARGV[2] unless the notice held there
// is newer (its "at_ns" field, ARGV[3], is greater).
var publishScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, held = pcall(cjson.decode, cur)
  if ok and held.at_ns and tonumber(held.at_ns) > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

type storedKeyChange struct {
	KeyChange
	AtNS int64 `json:"at_ns"`
}

// Publish makes c the latest change of its key, unless a newer one is held.
func (s *KeyChanges) Publish(ctx context.Context, c KeyChange) error {
	v, err := json.Marshal(storedKeyChange{KeyChange: c, AtNS: c.At.UnixNano()})
	if err != nil {
		return err
	}
	if err := publishScript.Run(ctx, s.rdb, []string{s.key}, c.ID, v, c.At.UnixNano()).Err(); err != nil {
		return fmt.Errorf("publish key change in redis: %w", err)
	}
	return nil
}

// Latest returns the latest change of every key that has one, by key label.
func (s *KeyChanges) Latest(ctx context.Context) ([]KeyChange, error) {
	m, err := s.rdb.HGetAll(ctx, s.key).Result()
	if err != nil {
		return nil, fmt.Errorf("read key changes from redis: %w", err)
	}
	out := make([]KeyChange, 0, len(m))
	for id, v := range m {
		var c storedKeyChange
		if err := json.Unmarshal([]byte(v), &c); err != nil || c.ID != id {
			return nil, fmt.Errorf("key change notice for %s does not decode", id)
		}
		out = append(out, c.KeyChange)
	}
	slices.SortFunc(out, func(a, b KeyChange) int { return a.At.Compare(b.At) })
	return out, nil
}
