package redislimit

import "github.com/redis/go-redis/v9"

// The scripts read the clock with TIME on the Redis server, so every gateway
// instance measures windows on the same clock whatever its own drift. Numbers
// stored by a script are formatted with %.0f: Redis converts Lua numbers to
// strings with "%.17g" or "%.14g" depending on version, and 14 digits would
// round a microsecond timestamp.

// cardScript checks and counts one card operation.
//
//	KEYS[1] daily operations counter   KEYS[2] wrong-PIN sorted set
//	ARGV[1] operations allowed per day ARGV[2] counter TTL, seconds
//	ARGV[3] wrong PINs allowed in the window, 0 = do not check
//	ARGV[4] window, milliseconds
//
// Returns {verdict, count}: verdict 0 = allowed (count = operations today
// including this one), 1 = daily limit reached, 2 = wrong-PIN limit reached
// (count = marks in the window). A refused operation is not counted.
var cardScript = redis.NewScript(`
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wp_limit = tonumber(ARGV[3])
if wp_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now_ms - tonumber(ARGV[4])))
  local marks = redis.call('ZCARD', KEYS[2])
  if marks >= wp_limit then
    return {2, marks}
  end
end
local ops = tonumber(redis.call('GET', KEYS[1]) or '0')
if ops >= tonumber(ARGV[1]) then
  return {1, ops}
end
ops = redis.call('INCR', KEYS[1])
if ops == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return {0, ops}
`)

// wrongPINScript adds one wrong-PIN mark for a card.
//
//	KEYS[1] wrong-PIN sorted set  ARGV[1] window, milliseconds  ARGV[2] mark id
//
// Returns the number of marks in the window, this one included. The set
// expires one window after its newest mark.
var wrongPINScript = redis.NewScript(`
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', now_ms), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now_ms - window))
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
`)

// gcraScript is one GCRA decision (virtual scheduling): the key holds the
// theoretical arrival time (TAT) in microseconds. A request at time now is
// conforming when TAT - now <= (burst - 1) * interval; a conforming request
// moves TAT to max(TAT, now) + interval.
//
//	KEYS[1] TAT  ARGV[1] emission interval, µs (1e6 / rate)  ARGV[2] burst
//
// Returns {allowed (1/0), retry after in µs}.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local allow_at = tat - (burst - 1) * interval
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
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
