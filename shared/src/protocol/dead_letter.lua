-- Moves a message that cannot succeed to the dead-letter stream with its reason, ending its lease (if this
-- dispatcher holds one) and its lane entry. ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id,
-- ARGV[4] execution id ('' when unknown), ARGV[5] lane, ARGV[6] entry id, ARGV[7..] field/value pairs of the
-- dead-letter entry. Returns the dead-letter entry id.
PREFIX = ARGV[1]
local group, owner, id, lane, entry = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if id ~= '' then
  local lease = owned_lease(id, owner)
  if lease then
    end_lease(id, lease)
    wake('released')
  end
  redis.call('HDEL', K.queued(), id)
end
if lane ~= '' and entry ~= '' then
  ack_entry(lane, group, entry)
end
return redis.call('XADD', K.dead_letters(), '*', unpack(args_from(7)))
