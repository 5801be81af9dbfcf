-- Ends leases: the attempts are over, their slots are free again.
-- ARGV[1] prefix, ARGV[2] consumer group, ARGV[3] dispatcher id (only its own leases are released),
-- ARGV[4..] execution ids. Acknowledges and deletes each lane entry. Returns the number released.
PREFIX = ARGV[1]
local group, owner = ARGV[2], ARGV[3]
local released = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local lease = owned_lease(id, owner)
  if lease then
    end_lease(id, lease)
    ack_entry(lease[4], group, lease[5])
    released = released + 1
  end
end
if released > 0 then
  wake('released')
end
return released
