-- Charges one submission to its tenant's submit rate limit, atomically across every API replica: a token bucket
-- of `burst` tokens refilled at `rate` tokens per second. A submission takes one token or is refused, and a
-- refusal writes nothing. The bucket keeps its token count rather than a time, so a changed rate or burst applies
-- from the next submission on: a new rate refills what is there, a smaller burst caps it.
-- KEYS[1] limits hash      ({prefix}:limits): `rate:<tenant>` and `burst:<tenant>` override the defaults
-- KEYS[2] bucket hash      ({prefix}:submit-rate:{tenant}): `tokens` (fractional) as of `at` (µs since the epoch)
-- ARGV[1] tenant
-- ARGV[2] default rate in submissions per second (0: no limit)
-- ARGV[3] default burst (0: the rate rounded up, at least 1)
-- Returns {allowed (1|0), burst (0 when there is no limit), whole tokens left, microseconds until a token is
-- available (0 when allowed), microseconds until the bucket is full}.
local overrides = redis.call('HMGET', KEYS[1], 'rate:' .. ARGV[1], 'burst:' .. ARGV[1])
local rate = tonumber(overrides[1]) or tonumber(ARGV[2]) or 0
if rate <= 0 then
  return {1, 0, 0, 0, 0}
end
local burst = tonumber(overrides[2]) or tonumber(ARGV[3]) or 0
if burst <= 0 then
  burst = math.max(1, math.ceil(rate))
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local stored = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = burst
if stored[1] and stored[2] then
  local elapsed = math.max(0, now - tonumber(stored[2]))
  tokens = math.min(burst, tonumber(stored[1]) + elapsed * rate / 1000000)
end
local per_token = 1000000 / rate
if tokens < 1 then
  return {0, burst, 0, math.ceil((1 - tokens) * per_token), math.ceil((burst - tokens) * per_token)}
end
tokens = tokens - 1
local full_in = math.ceil((burst - tokens) * per_token)
redis.call('HSET', KEYS[2], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.0f', now))
-- Kept until the bucket is full again; then an absent key means the same thing.
redis.call('PEXPIRE', KEYS[2], math.max(1, math.ceil(full_in / 1000)))
return {1, burst, math.floor(tokens + 1e-6), 0, full_in}
