package redislimit

import "github.com/redis/go-redis/v9"

// The scripts read the clock with TIME on the Redis server, so every gateway
// instance measures windows on the same clock whatever its own drift. Numbers
// stored by a script are formatted with %.0f: Redis converts Lua numbers to
// strings with "%.17g" or "%.14g" depending on version, and 14 digits would
// round a microsecond timestamp.
//
// Every script is one of the bodies below after the shared prelude (the
// clock and the checks as local functions), so the single-node script and the
// per-slot scripts of Redis Cluster decide alike.

// Verdicts, the first value every decision script returns.
const (
	verdictAllowed   = 0 // {0, operations today including this one}
	verdictDaily     = 1 // {1, operations today}
	verdictWrongPIN  = 2 // {2, wrong-PIN marks in the window}
	verdictTerminal  = 3 // {3, retry after, µs}
	verdictAcquirer  = 4 // {4, retry after, µs}
	verdictDuplicate = 9 // {9, server time ms, s, dl, c, o, r, i, e}: the window's record
	// {10, 0}: the record was forbidden (forbidScript), its acquirer having
	// reversed the request before it came; now claimed, nothing charged.
	verdictReversedFirst = 10
)

const prelude = `
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)

-- The window record of key, if there is one: {9, now, s, dl, c, o, r, i, e}.
-- A record still in flight for claimer itself is this script run again (the
-- client retried after losing the first answer): its first verdict,
-- {v, n}, is returned instead, and nothing is charged twice. A forbidden
-- record (s = 'x', forbidScript) is {10}: the request is to be claimed and
-- refused.
local function window_seen(key, claimer)
  local rec = redis.call('HMGET', key, 's', 'dl', 'c', 'o', 'r', 'i', 'e', 'id', 'v', 'n')
  if not rec[1] then
    return nil
  end
  if rec[1] == 'x' then
    return {10}
  end
  if rec[1] == 'f' and rec[8] == claimer then
    return {tonumber(rec[9]), tonumber(rec[10])}
  end
  return {9, now_ms, rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7]}
end

-- Holds the request in flight for claimer until now + remaining ms, for
-- window ms, with the verdict it was given.
local function window_claim(key, window, remaining, claimer, verdict, n)
  redis.call('HSET', key, 's', 'f', 'dl', string.format('%.0f', now_ms + remaining), 'id', claimer,
    'v', verdict, 'n', string.format('%.0f', n))
  redis.call('PEXPIRE', key, window)
end

-- Card limits, checked, not counted: verdict, count.
local function card_check(ops_key, wp_key, ops_limit, wp_limit, wp_window)
  if wp_limit > 0 then
    -- The marks of the window, read only: finishScript drops the older
    -- ones when it adds a mark, and the set expires with its newest.
    local marks = redis.call('ZCOUNT', wp_key, string.format('(%.0f', now_ms - wp_window), '+inf')
    if marks >= wp_limit then
      return 2, marks
    end
  end
  local ops = tonumber(redis.call('GET', ops_key) or '0')
  if ops >= ops_limit then
    return 1, ops
  end
  return 0, ops
end

local function card_count(ops_key, ttl)
  local ops = redis.call('INCR', ops_key)
  if ops == 1 then
    redis.call('EXPIRE', ops_key, ttl)
  end
  return ops
end

-- GCRA (virtual scheduling): the key holds the theoretical arrival time
-- (TAT) in µs. A request at now conforms when TAT - now <= (burst - 1) *
-- interval; a conforming request moves TAT to max(TAT, now) + interval.
-- Returns conforming, and the new TAT or the retry-after delay in µs.
local function gcra_check(key, interval, burst)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now_us then
    tat = now_us
  end
  local allow_at = tat - (burst - 1) * interval
  if now_us < allow_at then
    return false, allow_at - now_us
  end
  return true, tat + interval
end

local function gcra_set(key, tat)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now_us) / 1000))
end
`

// cardPart is what requestScript and cardScript share: the duplicate
// window's check, the card limits', and the end of a request's decision —
// the card counted when the verdict allows, the window claimed with the
// verdict. Its KEYS and ARGV are requestScript's first ones:
//
//	KEYS[1] window record  KEYS[2] daily operations  KEYS[3] wrong-PIN set
//	ARGV[1] window, ms (0 = no window)  ARGV[2] the request's remaining time, ms
//	ARGV[3] operations per day  ARGV[4] counter TTL, s
//	ARGV[5] wrong PINs allowed (0 = do not check)  ARGV[6] wrong-PIN window, ms
//	ARGV[7] claimer: the request's operation id
const cardPart = `
local window = tonumber(ARGV[1])

-- The window's record when the request is a duplicate (nothing else is
-- done then), else nil.
local function request_seen()
  if window > 0 then
    return window_seen(KEYS[1], ARGV[7])
  end
  return nil
end

-- The card limits' verdict and count.
local function request_card()
  return card_check(KEYS[2], KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6]))
end

-- The reply to a request decided verdict: the card counted if allowed, the
-- window claimed either way.
local function request_end(verdict, n)
  if verdict == 0 then
    n = card_count(KEYS[2], ARGV[4])
  end
  if window > 0 then
    window_claim(KEYS[1], window, tonumber(ARGV[2]), ARGV[7], verdict, n)
  end
  return {verdict, n}
end
`

// requestScript is every decision of one request in one script, for a
// single Redis (standalone or Sentinel), where a script may touch any key:
// the duplicate window, the card limits and both throughput limits, checked
// in that order. The card is counted only when every limit allows (no
// refund needed); each throughput limit is charged whenever it conforms, the
// card refused or not, as with the per-slot scripts of Redis Cluster (a
// refused request is load on its terminal all the same). A duplicate
// charges nothing.
//
//	KEYS[1] to KEYS[3], ARGV[1] to ARGV[7] as cardPart's
//	KEYS[4] terminal TAT   KEYS[5] acquirer TAT
//	ARGV[8] terminal interval, µs (0 = no terminal limit)  ARGV[9] terminal burst
//	ARGV[10] acquirer interval, µs (0 = no acquirer limit)  ARGV[11] acquirer burst
//
// Returns {verdict, ...} (the verdict* constants). A request that is not a
// duplicate is claimed in the window whatever the limits decide.
var requestScript = redis.NewScript(prelude + cardPart + `
local seen = request_seen()
if seen and seen[1] == 10 then
  return request_end(10, 0)
elseif seen then
  return seen
end
local verdict, n = request_card()
-- Each throughput limit is charged when it conforms; the first refusal names
-- the verdict.
local function charge(key, interval, burst, refusal)
  if interval <= 0 then
    return
  end
  local ok, v = gcra_check(key, interval, burst)
  if ok then
    gcra_set(key, v)
  elseif verdict == 0 then
    verdict, n = refusal, v
  end
end
charge(KEYS[4], tonumber(ARGV[8]), tonumber(ARGV[9]), 3)
charge(KEYS[5], tonumber(ARGV[10]), tonumber(ARGV[11]), 4)
return request_end(verdict, n)
`)

// cardScript is the card's part of a request on Redis Cluster, where keys of
// different hash tags live in different slots: the duplicate window and the
// card limits, whose keys share the card's tag. It counts the operation when
// the card limits allow it (a throughput refusal from the other slots' scripts
// then gives it back with refundScript).
//
//	KEYS[1] to KEYS[3], ARGV[1] to ARGV[7] as cardPart's
var cardScript = redis.NewScript(prelude + cardPart + `
local seen = request_seen()
if seen and seen[1] == 10 then
  return request_end(10, 0)
elseif seen then
  return seen
end
return request_end(request_card())
`)

// gcraScript is one throughput decision, charged when it conforms, for Redis
// Cluster (one script per slot).
//
//	KEYS[1] TAT  ARGV[1] emission interval, µs (1e6 / rate)  ARGV[2] burst
//
// Returns {0, 0} when allowed, {3, retry after in µs} when not.
var gcraScript = redis.NewScript(prelude + `
local ok, v = gcra_check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if not ok then
  return {3, v}
end
gcra_set(KEYS[1], v)
return {0, 0}
`)

// finishScript stores a claimed request's outcome and feeds the card's
// wrong-PIN marks; its keys share the card's tag, so it is one script on
// Redis Cluster too. Record uses it without a window.
//
//	KEYS[1] wrong-PIN set  KEYS[2] window record (absent: no window)
//	ARGV[1] feed: 0 nothing, 1 add a mark, 2 clear the marks
//	ARGV[2] wrong-PIN window, ms  ARGV[3] mark id
//	ARGV[4] window, ms  ARGV[5..9] code, outcome, reason, issuer, event id
//	ARGV[10] reversal material ('' = none)
//
// Returns the wrong-PIN marks in the window after a mark, else 0. The record
// expires one window after its outcome; a wrong-PIN set one window after its
// newest mark.
var finishScript = redis.NewScript(`
if #KEYS > 1 then
  if ARGV[10] ~= '' then
    redis.call('HSET', KEYS[2], 's', 'd', 'c', ARGV[5], 'o', ARGV[6], 'r', ARGV[7], 'i', ARGV[8], 'e', ARGV[9], 'rev', ARGV[10])
  else
    redis.call('HSET', KEYS[2], 's', 'd', 'c', ARGV[5], 'o', ARGV[6], 'r', ARGV[7], 'i', ARGV[8], 'e', ARGV[9])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local feed = ARGV[1]
if feed == '1' then
  local t = redis.call('TIME') -- only here: TIME costs as much as several reads
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local window = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], string.format('%.0f', now_ms), ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now_ms - window))
  redis.call('PEXPIRE', KEYS[1], window)
  return redis.call('ZCARD', KEYS[1])
elseif feed == '2' then
  redis.call('DEL', KEYS[1])
end
return 0
`)

// readScript reads a window record with the server's clock:
//
//	KEYS[1] window record
//
// Returns {now ms, s, dl, c, o, r, i, e, rev, rvd} (false for absent fields).
var readScript = redis.NewScript(prelude + `
local rec = redis.call('HMGET', KEYS[1], 's', 'dl', 'c', 'o', 'r', 'i', 'e', 'rev', 'rvd')
return {now_ms, rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8], rec[9]}
`)

// forbidScript marks a request that the window does not hold as reversed by
// its acquirer before it came (routing.WindowReversals.Forbid): the record
// is s = 'x', reversal claimed; the request's claim takes it over
// (verdictReversedFirst).
//
//	KEYS[1] window record  ARGV[1] window, ms  ARGV[2] the mark's token
//
// Returns 1 when marked (also when this token's mark is there: the client
// sent the script again), 0 when the window holds the request.
var forbidScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  local rec = redis.call('HMGET', KEYS[1], 's', 'fid')
  if rec[1] == 'x' and rec[2] == ARGV[2] then
    return 1
  end
  return 0
end
redis.call('HSET', KEYS[1], 's', 'x', 'rvd', '1', 'fid', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// claimReversalScript marks a finished record reversed, once.
//
//	KEYS[1] window record
//
// Returns 1 when this call claimed it, 0 when it was claimed already, -1
// when there is no finished record.
var claimReversalScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 's') ~= 'd' then
  return -1
end
return redis.call('HSETNX', KEYS[1], 'rvd', '1')
`)

// unclaimScript undoes a request's decision that could not be made durable
// (fewer replicas than Config.ReplicaAcks took it): its window claim, if the
// claim is still this request's and in flight, and its count, if counted.
// Both keys share the card's tag.
//
//	KEYS[1] window record (or the counter again: no window)  KEYS[2] daily operations
//	ARGV[1] claimer  ARGV[2] 1 = the operation was counted
var unclaimScript = redis.NewScript(`
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' and redis.call('HGET', KEYS[1], 'id') == ARGV[1]
    and redis.call('HGET', KEYS[1], 's') == 'f' then
  redis.call('DEL', KEYS[1])
end
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DECR', KEYS[2])
end
return 0
`)

// refundScript gives back one counted operation (KEYS[1], the daily counter)
// when a throughput limit refused the request after the card script counted
// it. It never creates the key, so a counter that expired meanwhile is not
// recreated without a TTL.
var refundScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('DECR', KEYS[1])
end
return 0
`)
