-- Prepended to every script by the registry (scripts.rs): the key builders, the Lua mirror of keys.rs, and the
-- steps several scripts share. A script that builds keys sets PREFIX first (it arrives as an argument); a test
-- evaluates every builder against `Keys` and fails when the two disagree.
local PREFIX = ''
local K = {}
function K.lane(tenant, priority) return PREFIX .. ':queue:' .. tenant .. ':p' .. priority end
function K.tenants() return PREFIX .. ':tenants' end
function K.lanes(tenant) return PREFIX .. ':lanes:' .. tenant end
function K.queued() return PREFIX .. ':queued' end
function K.turn() return PREFIX .. ':turn' end
function K.active() return PREFIX .. ':active' end
function K.active_tenant(tenant) return PREFIX .. ':active:tenant:' .. tenant end
function K.active_workflow(tenant, workflow) return PREFIX .. ':active:workflow:' .. tenant .. ':' .. workflow end
function K.lease(id) return PREFIX .. ':lease:' .. id end
function K.limits() return PREFIX .. ':limits' end
function K.dispatchers() return PREFIX .. ':dispatchers' end
function K.dispatcher_stats(dispatcher) return PREFIX .. ':dispatcher-stats:' .. dispatcher end
function K.status() return PREFIX .. ':status' end
function K.progress(id) return PREFIX .. ':status:' .. id end
function K.dead_letters() return PREFIX .. ':dead' end
function K.cancel(id) return PREFIX .. ':cancel:' .. id end
function K.retrying() return PREFIX .. ':retrying' end
function K.retry(id) return PREFIX .. ':retry:' .. id end
function K.wake() return PREFIX .. ':wake' end
function K.submit_rate(tenant) return PREFIX .. ':submit-rate:' .. tenant end
function K.paused(tenant) return PREFIX .. ':paused:' .. tenant end

-- The value of `name` in a flat {field, value, ...} list, or nil.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then
      return fields[i + 1]
    end
  end
  return nil
end

-- The arguments from index `from` on, as a list (the field/value pairs of a stream entry or hash).
local function args_from(from)
  local out = {}
  for i = from, #ARGV do
    out[#out + 1] = ARGV[i]
  end
  return out
end

-- Sets every slot of a lease (the three `active` sorted sets) to `score`; `mode` is nil, or 'XX' to touch only
-- slots that still exist.
local function score_slots(id, tenant, workflow, score, mode)
  if mode then
    redis.call('ZADD', K.active(), mode, score, id)
    redis.call('ZADD', K.active_tenant(tenant), mode, score, id)
    redis.call('ZADD', K.active_workflow(tenant, workflow), mode, score, id)
  else
    redis.call('ZADD', K.active(), score, id)
    redis.call('ZADD', K.active_tenant(tenant), score, id)
    redis.call('ZADD', K.active_workflow(tenant, workflow), score, id)
  end
end

-- Reads the lease of `id` when `owner` holds it: {dispatcher, tenant, workflow, lane, entry}, else nil.
local function owned_lease(id, owner)
  local lease = redis.call('HMGET', K.lease(id), 'dispatcher', 'tenant', 'workflow', 'lane', 'entry')
  if lease[1] ~= owner then
    return nil
  end
  return lease
end

-- Ends a lease read by owned_lease: its slots are free and its record gone. The lane entry stays (see
-- ack_entry).
local function end_lease(id, lease)
  redis.call('ZREM', K.active(), id)
  redis.call('ZREM', K.active_tenant(lease[2]), id)
  redis.call('ZREM', K.active_workflow(lease[2], lease[3]), id)
  redis.call('DEL', K.lease(id))
end

-- Acknowledges and deletes a lane entry: every acknowledged entry is deleted, so a lane holds exactly the
-- delivered-but-unacknowledged entries and the waiting ones.
local function ack_entry(lane, group, entry)
  redis.call('XACK', lane, group, entry)
  redis.call('XDEL', lane, entry)
end

-- Tells idle dispatchers to try admission now (`why` is informational).
local function wake(why)
  redis.call('PUBLISH', K.wake(), why)
end
