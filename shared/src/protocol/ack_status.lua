-- The status pipeline's acknowledgement, after a batch is committed: acknowledges and deletes the applied
-- entries of `{prefix}:status`, and settles the progress streams of the executions that finished in the batch,
-- whose entries the same commit archived in PostgreSQL (record::progress).
-- ARGV[1] prefix, ARGV[2] the status group, ARGV[3] TTL (s), ARGV[4] n, ARGV[5 .. 4+n] the status entry ids,
-- then pairs: execution id, id of the last progress entry archived ('' when none was).
-- A stream whose newest entry is archived is deleted. One that received entries after its archived run (a
-- redrive started meanwhile, or the archive found nothing) loses the archived entries and gets the TTL, as a
-- stream of a finished execution always had.
PREFIX = ARGV[1]
local group, ttl, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if n > 0 then
  redis.call('XACK', K.status(), group, unpack(ARGV, 5, 4 + n))
  redis.call('XDEL', K.status(), unpack(ARGV, 5, 4 + n))
end
for i = 5 + n, #ARGV - 1, 2 do
  local stream, archived = K.progress(ARGV[i]), ARGV[i + 1]
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if newest ~= nil then
    if newest[1] == archived then
      redis.call('DEL', stream)
    else
      if archived ~= '' then
        -- MINID removes the entries below the archived one; the archived one goes by id.
        redis.call('XTRIM', stream, 'MINID', archived)
        redis.call('XDEL', stream, archived)
      end
      redis.call('EXPIRE', stream, ttl)
    end
  end
end
return n
