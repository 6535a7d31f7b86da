package redislimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"pingate/routing"
)

// Sealer enciphers and authenticates a value under a data key every gateway
// instance's security module derives alike (pinblock.DataSealer); aad is
// bound to the value but not enciphered.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// ErrApprovalUnreadable: a shared approval that does not open under this
// instance's data key (instances configured with different
// reversals.data_key) or does not decode. The error never carries the value.
var ErrApprovalUnreadable = errors.New("shared approval does not open under this instance's data key")

// Approvals is routing.Approvals in Redis: what reverses each approval of
// every gateway instance, kept for the duplicate window, so that an
// acquirer's 0420 reaching any instance undoes it.
//
// No PAN is in Redis in clear. Each approval (the issuer's message, with
// DE 2) is stored sealed (AES-256-GCM under the data key the instances'
// security modules derive from reversals.data_key, purpose "approvals"), with
// its Redis key as associated data, so a value moved to another key does not
// open. The Redis key is a SHA-256 of the request's identifying fields
// (acquirer, terminal, STAN, DE 7), not the fields themselves: bounded
// length, no braces that would break the Cluster hash tag. Layout, with P the
// limits' key prefix and H the first 32 hex digits of the hash:
//
//	P:{appr:H}       the sealed approval, PX = the duplicate window
//	P:{appr:H}:rev   the reversal claim (SET NX), PX = the duplicate window
//
// Both keys share a hash tag, so a Redis Cluster keeps them on one node.
type Approvals struct {
	rdb    redis.UniversalClient
	prefix string
	sealer Sealer
}

var _ routing.Approvals = (*Approvals)(nil)

// NewApprovals keeps approvals in rdb under prefix (the limits' KeyPrefix),
// sealed by sealer. The client stays the caller's to close.
func NewApprovals(rdb redis.UniversalClient, prefix string, sealer Sealer) (*Approvals, error) {
	if rdb == nil || sealer == nil {
		return nil, errors.New("redislimit: approvals need a Redis client and a sealer (they carry PANs)")
	}
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	return &Approvals{rdb: rdb, prefix: prefix, sealer: sealer}, nil
}

func (s *Approvals) key(k string) string {
	h := sha256.Sum256([]byte(k))
	return s.prefix + ":{appr:" + hex.EncodeToString(h[:16]) + "}"
}

// Keep stores a sealed under key for ttl.
func (s *Approvals) Keep(ctx context.Context, key string, a routing.Approval, ttl time.Duration) error {
	plain, err := json.Marshal(a)
	if err != nil {
		return err
	}
	k := s.key(key)
	v, err := s.sealer.Seal(plain, []byte(k))
	clear(plain)
	if err != nil {
		return fmt.Errorf("seal approval: %w", err)
	}
	if err := s.rdb.Set(ctx, k, v, ttl).Err(); err != nil {
		return fmt.Errorf("keep approval in redis: %w", err)
	}
	return nil
}

// Recall returns the approval kept under key. The clear JSON is cleared
// after decoding (best-effort: the PAN also lives in the returned string).
func (s *Approvals) Recall(ctx context.Context, key string) (routing.Approval, bool, error) {
	k := s.key(key)
	v, err := s.rdb.Get(ctx, k).Bytes()
	if errors.Is(err, redis.Nil) {
		return routing.Approval{}, false, nil
	}
	if err != nil {
		return routing.Approval{}, false, fmt.Errorf("recall approval from redis: %w", err)
	}
	plain, err := s.sealer.Open(v, []byte(k))
	if err != nil {
		return routing.Approval{}, false, ErrApprovalUnreadable
	}
	defer clear(plain)
	var a routing.Approval
	if err := json.Unmarshal(plain, &a); err != nil {
		return routing.Approval{}, false, ErrApprovalUnreadable
	}
	return a, true, nil
}

// Claim sets key's reversal claim if no instance holds it.
func (s *Approvals) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.key(key)+":rev", "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("claim reversal in redis: %w", err)
	}
	return ok, nil
}

// Release deletes key's reversal claim.
func (s *Approvals) Release(ctx context.Context, key string) error {
	if err := s.rdb.Del(ctx, s.key(key)+":rev").Err(); err != nil {
		return fmt.Errorf("release reversal claim in redis: %w", err)
	}
	return nil
}
