-- Puts one execution in its tenant's queue lane, once, and wakes idle dispatchers.
-- KEYS[1] lane stream      ({prefix}:queue:{tenant}:p{priority})
-- KEYS[2] tenants zset     ({prefix}:tenants)
-- KEYS[3] lanes zset       ({prefix}:lanes:{tenant})
-- KEYS[4] queued hash      ({prefix}:queued)
-- KEYS[5] wake channel     ({prefix}:wake; pub/sub, not a key)
-- KEYS[6], KEYS[7] (only when promoting a retry): retrying zset, the execution's retry hash. The retry is
--   removed in the same step; when the retry hash is already gone (another dispatcher promoted it), nothing
--   is enqueued.
-- ARGV[1] execution id, ARGV[2] tenant, ARGV[3] priority (0-9), ARGV[4] consumer group,
-- ARGV[5..] field/value pairs of the stream entry.
-- Returns {1, entry id} when added, {0, existing entry} when the execution was already queued, {0, 'gone'}.
if KEYS[7] then
  if redis.call('EXISTS', KEYS[7]) == 0 then
    return {0, 'gone'}
  end
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('DEL', KEYS[7])
end
local existing = redis.call('HGET', KEYS[4], ARGV[1])
if existing then
  return {0, existing}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- The group starts at the beginning of the stream so that this first entry is delivered.
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[4], '0', 'MKSTREAM')
end
local entry = redis.call('XADD', KEYS[1], '*', unpack(args_from(5)))
redis.call('HSET', KEYS[4], ARGV[1], KEYS[1] .. ' ' .. entry)
redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
redis.call('PUBLISH', KEYS[5], 'queued')
return {1, entry}
