-- Recovery: takes over leases whose holder stopped heartbeating (expired), keeping their concurrency slot, so
-- limits hold while the attempt changes hands. The pending lane entry moves to this dispatcher (XCLAIM).
-- KEYS[1] active zset. ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id, ARGV[4] now (ms),
-- ARGV[5] new expiry (ms), ARGV[6] most leases to take.
-- Returns {{id, tenant, workflow, attempt, lane, entry, deliveries, previous holder, fields...}, ...}; fields
-- are the lane entry's (empty when the entry is gone).
PREFIX = ARGV[1]
local group, me = ARGV[2], ARGV[3]
local now, expiry = tonumber(ARGV[4]), tonumber(ARGV[5])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
local out = {}
for _, id in ipairs(expired) do
  local lease = redis.call('HMGET', K.lease(id), 'dispatcher', 'tenant', 'workflow', 'attempt', 'lane', 'entry')
  if not lease[2] then
    -- A slot without a lease record: nothing to resume, just free the slot.
    redis.call('ZREM', KEYS[1], id)
  else
    score_slots(id, lease[2], lease[3], expiry)
    redis.call('HSET', K.lease(id), 'dispatcher', me)
    local deliveries = redis.call('HINCRBY', K.lease(id), 'deliveries', 1)
    local claimed = redis.call('XCLAIM', lease[5], group, me, 0, lease[6])
    local fields = {}
    if claimed[1] and claimed[1][2] then fields = claimed[1][2] end
    out[#out + 1] = {id, lease[2], lease[3], lease[4], lease[5], lease[6], deliveries, lease[1] or '', fields}
  end
end
return out
