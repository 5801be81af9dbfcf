-- Heartbeat: extends the leases this dispatcher holds. ARGV[1] prefix, ARGV[2] dispatcher id, ARGV[3] new
-- expiry (ms), ARGV[4] now (ms), ARGV[5..] execution ids. Records the dispatcher's own heartbeat too.
-- Returns, per id: 1 renewed, 0 lost (taken over or gone), 2 renewed and cancellation requested.
local prefix, owner, expiry = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('ZADD', prefix .. ':dispatchers', tonumber(ARGV[4]), owner)
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local lease = redis.call('HMGET', prefix .. ':lease:' .. id, 'dispatcher', 'tenant', 'workflow')
  if lease[1] == owner then
    redis.call('ZADD', prefix .. ':active', 'XX', expiry, id)
    redis.call('ZADD', prefix .. ':active:tenant:' .. lease[2], 'XX', expiry, id)
    redis.call('ZADD', prefix .. ':active:workflow:' .. lease[2] .. ':' .. lease[3], 'XX', expiry, id)
    if redis.call('EXISTS', prefix .. ':cancel:' .. id) == 1 then
      out[#out + 1] = 2
    else
      out[#out + 1] = 1
    end
  else
    out[#out + 1] = 0
  end
end
return out
