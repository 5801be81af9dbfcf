-- Ends leases: the attempts are over (or handed to the retry schedule), their slots are free again.
-- ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id (only its own leases are released),
-- ARGV[4..] execution ids. Acknowledges and deletes each lane entry. Returns the number released.
local prefix, group, owner = ARGV[1], ARGV[2], ARGV[3]
local released = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local lease_key = prefix .. ':lease:' .. id
  local lease = redis.call('HMGET', lease_key, 'dispatcher', 'tenant', 'workflow', 'lane', 'entry')
  if lease[1] == owner then
    redis.call('ZREM', prefix .. ':active', id)
    redis.call('ZREM', prefix .. ':active:tenant:' .. lease[2], id)
    redis.call('ZREM', prefix .. ':active:workflow:' .. lease[2] .. ':' .. lease[3], id)
    redis.call('DEL', lease_key)
    redis.call('XACK', lease[4], group, lease[5])
    redis.call('XDEL', lease[4], lease[5])
    released = released + 1
  end
end
if released > 0 then
  redis.call('PUBLISH', prefix .. ':wake', 'released')
end
return released
