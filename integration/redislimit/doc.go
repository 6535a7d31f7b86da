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
// On a single Redis (standalone, or the primary Sentinel names) every
// decision of a request — the shared duplicate window (Claim), the card
// limits and both throughput limits — is one Lua script, one EVALSHA, one
// round trip; the card is counted only when every limit allows. On Redis
// Cluster a script may only touch keys of one slot, and the card's, the
// terminal's and the acquirer's keys cannot share one (the terminal's
// counter is shared by every card), so the card's script (which holds the
// duplicate window: its key carries the card's hash tag) and one GCRA script
// per throughput limit go as one pipeline, which go-redis splits by node and
// sends in parallel: still one round trip (the slowest node's); a throughput
// refusal then gives the card's count back in a second one. Keys are
// hash-tagged: "<prefix>:{c:<card token>}:ops:<yyyymmdd>",
// "<prefix>:{c:<card token>}:wp" and the window's
// "<prefix>:{c:<card token>}:w:<acquirer>:<terminal>:<stan>:<transmit>" for
// the card, "<prefix>:{t:<acquirer>:<terminal>}" and "<prefix>:{a:<acquirer>}"
// for throughput. Scripts are sent by SHA1 (EVALSHA); if the server answers
// NOSCRIPT (after a restart, a failover or SCRIPT FLUSH) the affected
// scripts are re-sent in full with EVAL, which also caches them again.
//
// On a single Redis the scripts of concurrent requests share pipelines: a
// script that finds two pipelines out waits and leaves with the next one,
// with every other waiting script (batch.go). Each is still one atomic
// script with its own answer; nothing waits to fill a batch.
//
// Finish stores a claimed request's outcome and feeds its result to the
// card's wrong-PIN marks (55 adds one; 00 for an unblock or a reset clears
// them) in one more script. Record does the same for a request outside the
// window, only when its result feeds a limit.
//
// # The duplicate window
//
// Limiter is a routing.SharedWindow: a retransmission (same card token,
// acquirer, terminal, STAN and DE 7) that reaches any gateway instance gets
// the first request's outcome and is not sent to the issuer again. One
// retransmitted while the first is in flight on another instance waits for
// its outcome (reading the record every 20 ms) until 100 ms before its own
// deadline or 2 s past the first's; then routing.ErrDuplicateInFlight,
// answered 94 duplicate_in_flight. Lookup, ClaimReversal and ReleaseReversal
// serve an instance taking the acquirer's reversal advice: the record's
// reversal field carries the approval sealed by the flow (routing.Sealer), so
// the instance that takes a 0420 can build the issuer's advice without a
// clear PAN in Redis.
//
// # Key changes
//
// KeyChanges is the latest online key change (0800/161) of every key, one
// hash (P:{keys}), the key under the ZMK as the acquirer sent it: the
// instance that took the change publishes it, every instance reads it every
// security.key_sync_interval and takes what is newer than it holds
// (integration/gateway).
//
// # When Redis fails
//
// Card limits and the duplicate window fail closed: if Redis cannot answer
// the card script (down, timeout, cluster slot unavailable, context expired)
// the request is refused with 91 "issuer or switch inoperative", reason
// "limiter_unavailable", and Allow and Claim also return an error wrapping
// ErrUnavailable: without the window a retransmission could reach the
// issuer twice, so nothing is sent. Throughput limits fail
// open to a local per-instance token bucket with the same rate and burst, so
// with N gateway instances the effective limit during an outage is up to N
// times the configured one. Counters of decisions and fallbacks are kept as
// OTel metrics (meter "pingate/redislimit") and, for tests and status pages,
// as atomic counters returned by Limiter.Stats.
package redislimit
