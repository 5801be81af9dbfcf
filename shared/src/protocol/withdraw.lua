-- Takes an execution out of the queue while it still waits: its lane entry (not yet claimed) and its
-- back-off before a retry. A claimed execution (one with a lease) is left alone: the dispatcher holding the
-- lease stops it through the cancel key.
-- KEYS[1] queued hash      ({prefix}:queued)
-- KEYS[2] retrying zset    ({prefix}:retrying)
-- KEYS[3] retry hash       ({prefix}:retry:{execution})
-- ARGV[1] execution id
-- The lane key comes from the queued hash's value (`lane-key entry-id`), so it is not declared in KEYS; the key
-- space is for a single Redis (see docs/redis.md), where that is allowed.
-- Returns {1 if a lane entry was removed else 0, 1 if a pending retry was removed else 0}.
local lane_removed = 0
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then
  local space = string.find(entry, ' ', 1, true)
  if space then
    lane_removed = redis.call('XDEL', string.sub(entry, 1, space - 1), string.sub(entry, space + 1))
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local retry_removed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return {lane_removed, retry_removed}
