-- Counts the unclaimed entries ahead of one waiting entry in its tenant's queue, and sends back only the count:
-- the read behind `queue_position` and the waiting reason (GET /api/v1/executions/{id}). Read-only. Ahead are
-- the entries of its own lane before it, and in the tenant's other lanes those admission ranks before it: with
-- strict priority every entry of a higher lane; with priority aging (`aging` in the limits hash) an entry of
-- lane p' when it was added less than (p' - p) x aging after this one (for a lower lane, more than
-- (p - p') x aging before it). Times are the entries' ids (when they were added to their lane).
-- KEYS[1] the tenant's lanes ({prefix}:lanes:{tenant}, priorities)
-- KEYS[2] limits hash      ({prefix}:limits): `aging` in ms per priority level (absent or 0: strict)
-- KEYS[3] the entry's lane ({prefix}:queue:{tenant}:p{priority})
-- ARGV[1] prefix, ARGV[2] tenant, ARGV[3] entry id, ARGV[4] most entries counted per lane, ARGV[5] the group
-- Returns {entries ahead, 1 when some lane had at least the cap (the true count is larger) else 0}.
PREFIX = ARGV[1]
local tenant, entry, cap, group = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local aging_ms = tonumber(redis.call('HGET', KEYS[2], 'aging')) or 0
local own_ms = tonumber(string.match(entry, '^(%d+)'))

-- The last entry the group delivered (nothing after it is claimed yet); nil when the lane is gone.
local function last_delivered(lane)
  if redis.call('EXISTS', lane) == 0 then return nil end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', lane)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then return last end
  end
  return '0-0'
end

local ahead, capped = 0, 0
local function count(lane, stop)
  local last = last_delivered(lane)
  if not last then return end
  local n = #redis.call('XRANGE', lane, '(' .. last, stop, 'COUNT', cap)
  ahead = ahead + n
  if n >= cap then capped = 1 end
end

local priorities = redis.call('ZRANGE', KEYS[1], 0, -1)
local own
for _, p in ipairs(priorities) do
  if K.lane(tenant, p) == KEYS[3] then own = tonumber(p) end
end
count(KEYS[3], '(' .. entry)
if own then
  for _, p in ipairs(priorities) do
    local priority = tonumber(p)
    if priority ~= own then
      if aging_ms > 0 and own_ms then
        local bound = own_ms + (priority - own) * aging_ms
        if bound > 0 then count(K.lane(tenant, priority), string.format('%d', bound - 1)) end
      elseif priority > own then
        count(K.lane(tenant, priority), '+')
      end
    end
  end
end
return {ahead, capped}
