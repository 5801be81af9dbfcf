-- Schedules the next attempt of an execution whose attempt failed on infrastructure: the lease ends (its slot
-- is free during the backoff) and the next attempt's queue message waits in `retrying` until it is due.
-- ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id, ARGV[4] execution id, ARGV[5] due (ms),
-- ARGV[6..] field/value pairs of the next attempt's queue message. Returns 1, or 0 when the lease is not ours.
PREFIX = ARGV[1]
local group, owner, id = ARGV[2], ARGV[3], ARGV[4]
local lease = owned_lease(id, owner)
if not lease then
  return 0
end
end_lease(id, lease)
ack_entry(lease[4], group, lease[5])
redis.call('DEL', K.retry(id))
redis.call('HSET', K.retry(id), unpack(args_from(6)))
redis.call('ZADD', K.retrying(), tonumber(ARGV[5]), id)
wake('released')
return 1
