// Package redislimit is pingate's rate limiter: per-card, per-terminal and
// per-acquirer limits shared by every gateway instance through Redis
// (Limiter), or kept inside one process without Redis (Memory, the embedded
// default). Both implement routing.Limiter with the same decisions.
//
// # Limits and answers
//
// Each Allow checks, for the request's card (by its keyed token, never the
// PAN), terminal and acquirer:
//
//   - card operations per calendar day (Config.CardOpsPerDay, default 10),
//     refused with ISO 8583 response code 65 "exceeds withdrawal frequency",
//     reason "card_daily_limit";
//   - wrong PINs for the card in the last hour, across every channel and
//     gateway instance (Config.CardWrongPINPerHour, default 3), refused with
//     75 "allowable number of PIN tries exceeded", reason
//     "card_wrong_pin_limit" — for PIN changes only, the one operation that
//     verifies a current PIN (a branch unblock exists to lift this state);
//   - terminal and acquirer throughput, a GCRA (generic cell rate algorithm,
//     ITU-T I.371 / the ATM Forum traffic management specification: a
//     virtual-scheduling leaky bucket kept as one "theoretical arrival time"
//     per key) with a rate and a burst, refused with 61 "exceeds amount
//     limit", reasons "terminal_rate_limit" and "acquirer_rate_limit".
//
// A refusal names its limit in routing.Decision.Refusal
// (routing.ErrCardDailyLimit, ErrCardWrongPINLimit, ErrTerminalLimit,
// ErrAcquirerLimit, or ErrLimiterUnavailable when the limits cannot be
// checked); the codes and reasons above are routing.ResponseFor's answers to
// them, not this package's choice.
//
// # One round trip
//
// The three checks are three Lua scripts, one per hash slot group (card,
// terminal, acquirer), sent as one pipeline of EVALSHA commands: one network
// round trip per Allow. Keys are hash-tagged so that each script's keys share
// a slot: "<prefix>:{c:<card token>}:ops:<yyyymmdd>" and
// "<prefix>:{c:<card token>}:wp" for the card, "<prefix>:{t:<acquirer>:<terminal>}"
// and "<prefix>:{a:<acquirer>}" for throughput. In Redis Cluster mode go-redis
// splits a pipeline by node and sends the parts in parallel, so the round trip
// stays one (the slowest node's). Scripts are sent by SHA1 (EVALSHA); if the
// server answers NOSCRIPT (after a restart or SCRIPT FLUSH) the affected
// scripts are re-sent in full with EVAL in one more pipeline, which also
// caches them again.
//
// Record with code 55 (incorrect PIN) adds a wrong-PIN mark: a second round
// trip, taken only on wrong-PIN results. Record with 00 for an unblock or a
// reset clears the card's marks.
//
// # When Redis fails
//
// Card limits fail closed: if Redis cannot answer the card script (down,
// timeout, cluster slot unavailable, context expired) the request is refused
// with 91 "issuer or switch inoperative", reason "limiter_unavailable", and
// Allow also returns an error wrapping ErrUnavailable. Throughput limits fail
// open to a local per-instance token bucket with the same rate and burst, so
// with N gateway instances the effective limit during an outage is up to N
// times the configured one. Counters of decisions and fallbacks are kept as
// OTel metrics (meter "pingate/redislimit") and, for tests and status pages,
// as atomic counters returned by Limiter.Stats.
package redislimit
