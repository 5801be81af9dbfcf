-- Moves a message that cannot succeed to the dead-letter stream with its reason, ending its lease (if this
-- dispatcher holds one) and its lane entry. ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id,
-- ARGV[4] execution id ('' when unknown), ARGV[5] lane, ARGV[6] entry id, ARGV[7..] field/value pairs of the
-- dead-letter entry. Returns the dead-letter entry id.
local prefix, group, owner, id, lane, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if id ~= '' then
  local lease_key = prefix .. ':lease:' .. id
  local lease = redis.call('HMGET', lease_key, 'dispatcher', 'tenant', 'workflow')
  if lease[1] == owner then
    redis.call('ZREM', prefix .. ':active', id)
    redis.call('ZREM', prefix .. ':active:tenant:' .. lease[2], id)
    redis.call('ZREM', prefix .. ':active:workflow:' .. lease[2] .. ':' .. lease[3], id)
    redis.call('DEL', lease_key)
    redis.call('PUBLISH', prefix .. ':wake', 'released')
  end
  redis.call('HDEL', prefix .. ':queued', id)
end
if lane ~= '' and entry ~= '' then
  redis.call('XACK', lane, group, entry)
  redis.call('XDEL', lane, entry)
end
local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
return redis.call('XADD', prefix .. ':dead', '*', unpack(fields))
