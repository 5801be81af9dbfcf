-- Heartbeat: extends the leases this dispatcher holds. ARGV[1] prefix, ARGV[2] dispatcher id, ARGV[3] new
-- expiry (ms), ARGV[4] now (ms), ARGV[5..] execution ids. Records the dispatcher's own heartbeat too.
-- Returns, per id: 1 renewed, 0 lost (taken over or gone), 2 renewed and cancellation requested.
PREFIX = ARGV[1]
local owner, expiry = ARGV[2], tonumber(ARGV[3])
redis.call('ZADD', K.dispatchers(), tonumber(ARGV[4]), owner)
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local lease = owned_lease(id, owner)
  if lease then
    score_slots(id, lease[2], lease[3], expiry, 'XX')
    if redis.call('EXISTS', K.cancel(id)) == 1 then
      out[#out + 1] = 2
    else
      out[#out + 1] = 1
    end
  else
    out[#out + 1] = 0
  end
end
return out
