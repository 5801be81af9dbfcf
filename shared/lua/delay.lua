-- Schedules the next attempt of an execution whose attempt failed on infrastructure: the lease ends (its slot
-- is free during the backoff) and the next attempt's queue message waits in `retrying` until it is due.
-- ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id, ARGV[4] execution id, ARGV[5] due (ms),
-- ARGV[6..] field/value pairs of the next attempt's queue message. Returns 1, or 0 when the lease is not ours.
local prefix, group, owner, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease_key = prefix .. ':lease:' .. id
local lease = redis.call('HMGET', lease_key, 'dispatcher', 'tenant', 'workflow', 'lane', 'entry')
if lease[1] ~= owner then
  return 0
end
redis.call('ZREM', prefix .. ':active', id)
redis.call('ZREM', prefix .. ':active:tenant:' .. lease[2], id)
redis.call('ZREM', prefix .. ':active:workflow:' .. lease[2] .. ':' .. lease[3], id)
redis.call('DEL', lease_key)
redis.call('XACK', lease[4], group, lease[5])
redis.call('XDEL', lease[4], lease[5])
local fields = {}
for i = 6, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('DEL', prefix .. ':retry:' .. id)
redis.call('HSET', prefix .. ':retry:' .. id, unpack(fields))
redis.call('ZADD', prefix .. ':retrying', tonumber(ARGV[5]), id)
redis.call('PUBLISH', prefix .. ':wake', 'released')
return 1
