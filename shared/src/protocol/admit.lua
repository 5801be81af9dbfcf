-- Admission: claims queued executions for one dispatcher, only as far as the concurrency limits allow, and
-- takes their leases, all in one atomic step. Work that cannot start stays unclaimed for other dispatchers.
-- KEYS[1] tenants zset ({prefix}:tenants)    KEYS[2] limits hash ({prefix}:limits)
-- KEYS[3] active zset ({prefix}:active)      KEYS[4] queued hash ({prefix}:queued)
-- KEYS[5] fair-share virtual time ({prefix}:turn)
-- ARGV[1] prefix (tenant-derived keys are built from it: single Redis only, not Redis Cluster)
-- ARGV[2] consumer group, ARGV[3] dispatcher id (consumer name and lease owner), ARGV[4] now (ms),
-- ARGV[5] lease expiry (ms), ARGV[6] most executions to admit in this call
-- Returns {stop reason, {lane, entry id, {field, value, ...}}, ...}. The stop reason says why admission stopped:
-- 'no-limits' (no dispatcher published limits), 'global' (global limit reached), 'batch' (ARGV[6] admitted),
-- 'idle' (nothing admissible: queues empty or every tenant with work at its limit or paused).
PREFIX = ARGV[1]
local group, consumer = ARGV[2], ARGV[3]
local now, expiry, max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local limits = redis.call('HMGET', KEYS[2], 'global', 'tenant', 'workflow', 'aging')
if not limits[1] then
  return {'no-limits'}
end
local global_limit = tonumber(limits[1])
local tenant_default = tonumber(limits[2]) or 0
local workflow_default = tonumber(limits[3]) or 0
-- Priority aging: a waiting entry gains one priority level per `aging_ms` of waiting (0: strict priority).
local aging_ms = tonumber(limits[4]) or 0

-- The next entry of a lane the group has not delivered yet, without delivering it.
local function peek(lane)
  local groups = redis.call('XINFO', 'GROUPS', lane)
  for _, g in ipairs(groups) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == group then
      local next = redis.call('XRANGE', lane, '(' .. last, '+', 'COUNT', 1)
      return next[1]
    end
  end
  return nil
end

-- A lane's priority raised by how long its next entry has waited (since `queued_at`, the submission): the
-- order in which a tenant's lanes are tried when aging is on. The head is peeked once per lane and call, and
-- again only after this call took from that lane.
local function aged_priority(state, priority)
  local head = state.heads[priority]
  if head == nil then
    head = peek(K.lane(state.name, priority)) or false
    state.heads[priority] = head
  end
  if not head then
    return tonumber(priority)
  end
  local queued_at = tonumber(field(head[2], 'queued_at') or '') or now
  return tonumber(priority) + math.max(0, now - queued_at) / aging_ms
end

-- The order in which to try a tenant's lanes: highest priority first, or with aging, highest aged priority
-- first (ties: the higher base priority). Only a tenant with more than one lane pays for the peeks.
local function lane_order(state)
  local priorities = state.priorities
  if aging_ms <= 0 or #priorities < 2 then
    return priorities
  end
  local ranked = {}
  for _, priority in ipairs(priorities) do
    ranked[#ranked + 1] = {priority, aged_priority(state, priority)}
  end
  table.sort(ranked, function(a, b)
    return a[2] > b[2] or (a[2] == b[2] and tonumber(a[1]) > tonumber(b[1]))
  end)
  local order = {}
  for i, r in ipairs(ranked) do order[i] = r[1] end
  return order
end

local out = {'idle'}
local admitted = 0
local active = redis.call('ZCARD', KEYS[3])
if active >= global_limit then
  out[1] = 'global'
  return out
end

-- What this call reads about a tenant once and then keeps up to date itself: nothing else runs while a script
-- runs, so the counts it tracks are the counts Redis holds. {name, limit, active, weight, paused = {member ->
-- true}, pauses, workflow_limit, priorities, heads = {priority -> peeked entry}, workflows = {name -> active}}.
local seen = {}
local function tenant_state(tenant)
  local state = seen[tenant]
  if state == nil then
    -- What of the tenant is paused: '*' (all of it) and workflow names.
    local paused = {}
    local pauses = redis.call('SMEMBERS', K.paused(tenant))
    for _, member in ipairs(pauses) do paused[member] = true end
    state = {
      name = tenant,
      heads = {},
      paused = paused,
      pauses = #pauses,
      limit = tonumber(redis.call('HGET', KEYS[2], 'tenant:' .. tenant)) or tenant_default,
      active = redis.call('ZCARD', K.active_tenant(tenant)),
      workflows = {},
    }
    seen[tenant] = state
  end
  return state
end
local function workflow_active(tenant, state, workflow)
  local count = state.workflows[workflow]
  if count == nil then
    count = redis.call('ZCARD', K.active_workflow(tenant, workflow))
    state.workflows[workflow] = count
  end
  return count
end

-- Fair share between tenants (start-time fair queuing, as stride scheduling does it): the tenants zset scores
-- each tenant with work by its tag, the virtual time at which its last admission ended, and KEYS[5] holds the
-- virtual time V, the start of the last admission. The tenant with the smallest tag is served next; its
-- admission starts at max(V, tag) and ends, as its new tag, 1/weight later. While tenants compete, a tenant of
-- weight 2 is therefore served twice as often as one of weight 1; one that had no work or sat at its limit
-- comes back at V and banks no credit (one admission of catch-up at most); one that cannot be served is skipped
-- without holding anyone back. A new tenant enters at 0 (enqueue.lua) and is served next, once.
local vtime = nil
local function tenant_weight(tenant, state)
  if state.weight == nil then
    local weight = tonumber(redis.call('HGET', KEYS[2], 'weight:' .. tenant)) or 1
    if weight <= 0 then weight = 1 end
    state.weight = weight
  end
  return state.weight
end

-- One admission from one tenant: its highest-priority lane with an admissible entry. Returns 'admitted',
-- 'blocked' (paused, at its limit, or every lane with work held back by a paused workflow or the per-workflow
-- limit: it keeps its tag) or
-- 'empty' (nothing left to deliver).
local function admit_one(tenant, state)
  if state.active >= state.limit or state.paused['*'] then
    return 'blocked'
  end
  local lanes_key = K.lanes(tenant)
  if state.priorities == nil then
    state.workflow_limit = tonumber(redis.call('HGET', KEYS[2], 'workflow:' .. tenant)) or workflow_default
    -- Highest priority first.
    state.priorities = redis.call('ZREVRANGE', lanes_key, 0, -1)
  end
  local workflow_limit = state.workflow_limit
  local served = false
  local emptied = {}
  for _, priority in ipairs(lane_order(state)) do
    local lane = K.lane(tenant, priority)
    local entry = nil
    local blocked = false
    while entry == nil do
      if workflow_limit > 0 or state.pauses > 0 then
        -- Look before claiming: an entry whose workflow is paused or at its limit stays unclaimed (and holds
        -- back this lane of this tenant only).
        local next = peek(lane)
        if next == nil then break end
        local workflow = field(next[2], 'workflow')
        if state.paused[workflow]
            or (workflow_limit > 0 and workflow_active(tenant, state, workflow) >= workflow_limit) then
          blocked = true
          break
        end
      end
      local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', lane, '>')
      if not read then break end
      local candidate = read[1][2][1]
      local id = field(candidate[2], 'id')
      if not id or not field(candidate[2], 'workflow') then
        -- Not a queue message: park it with the dead letters rather than block the lane.
        ack_entry(lane, group, candidate[1])
        local dead = {}
        for _, v in ipairs(candidate[2]) do dead[#dead + 1] = v end
        for _, v in ipairs({'reason', 'malformed queue entry (no id or workflow field)', 'dead_at', now,
            'deliveries', 1}) do dead[#dead + 1] = v end
        redis.call('XADD', K.dead_letters(), '*', unpack(dead))
      elseif redis.call('EXISTS', K.cancel(id)) == 1 then
        -- Cancelled while waiting: drop it without taking a slot.
        ack_entry(lane, group, candidate[1])
        redis.call('HDEL', KEYS[4], id)
      else
        entry = candidate
      end
    end
    if entry ~= nil then
      local fields = entry[2]
      local id = field(fields, 'id') or ''
      local workflow = field(fields, 'workflow') or ''
      score_slots(id, tenant, workflow, expiry)
      redis.call('HSET', K.lease(id),
        'dispatcher', consumer, 'tenant', tenant, 'workflow', workflow,
        'attempt', field(fields, 'attempt') or '1', 'lane', lane, 'entry', entry[1],
        'claimed_at', now, 'deliveries', 1)
      redis.call('HDEL', KEYS[4], id)
      out[#out + 1] = {lane, entry[1], fields}
      admitted = admitted + 1
      active = active + 1
      state.active = state.active + 1
      state.workflows[workflow] = workflow_active(tenant, state, workflow) + 1
      served = true
      state.heads[priority] = nil
      break
    end
    -- Entries may have been read (and dropped) here: the lane's head is peeked again when aging needs it.
    state.heads[priority] = nil
    if not blocked then
      -- Nothing left to deliver in this lane. Enqueue re-adds the lane with its next entry.
      redis.call('ZREM', lanes_key, priority)
      emptied[priority] = true
    end
  end
  local remaining = {}
  for _, priority in ipairs(state.priorities) do
    if not emptied[priority] then remaining[#remaining + 1] = priority end
  end
  state.priorities = remaining
  if served then
    return 'admitted'
  elseif #remaining == 0 then
    return 'empty'
  end
  return 'blocked'
end

-- Serves tenants in tag order until the batch is full, the global limit is reached or no tenant can be served.
local function admit_fairly()
  local scored = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  -- {tenant, tag}, ordered by tag, then name (the zset's own order).
  local order = {}
  for i = 1, #scored, 2 do
    order[#order + 1] = {scored[i], tonumber(scored[i + 1])}
  end
  local function before(a, b)
    return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1])
  end
  while #order > 0 do
    if admitted >= max then
      return 'batch'
    end
    if active >= global_limit then
      return 'global'
    end
    local head = table.remove(order, 1)
    local tenant, tag = head[1], head[2]
    local state = tenant_state(tenant)
    local result = admit_one(tenant, state)
    if result == 'admitted' then
      if vtime == nil then
        vtime = tonumber(redis.call('GET', KEYS[5])) or 0
      end
      local start = math.max(vtime, tag)
      vtime = start
      local next = {tenant, start + 1 / tenant_weight(tenant, state)}
      redis.call('ZADD', KEYS[1], string.format('%.17g', next[2]), tenant)
      -- Back into the order at its new tag (binary search for the first element after it).
      local low, high = 1, #order + 1
      while low < high do
        local mid = math.floor((low + high) / 2)
        if before(next, order[mid]) then high = mid else low = mid + 1 end
      end
      table.insert(order, low, next)
    elseif result == 'empty' then
      redis.call('ZREM', KEYS[1], tenant)
    end
  end
  return 'idle'
end

out[1] = admit_fairly()
if vtime ~= nil then
  redis.call('SET', KEYS[5], string.format('%.17g', vtime))
end
return out
