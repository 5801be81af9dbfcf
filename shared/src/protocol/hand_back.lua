-- Hands an attempt back at the end of a drain: the lease of this dispatcher expires now, so another
-- dispatcher takes it over (keeping its slot) on its next recovery pass. ARGV[1] prefix, ARGV[2] dispatcher
-- id, ARGV[3] execution id. Returns 1, or 0 when the lease is not this dispatcher's (nothing changes).
PREFIX = ARGV[1]
local owner, id = ARGV[2], ARGV[3]
local lease = owned_lease(id, owner)
if not lease then
  return 0
end
score_slots(id, lease[2], lease[3], 0, 'XX')
return 1
