-- ExtendDeliveryLeases moves the lease end of the deliveries still leased;
-- ids of deliveries not leased are ignored.
--
-- ARGV: prefix, lease end (hex), ids.
local lease = ARGV[2]
for i = 3, #ARGV do
  local id = ARGV[i]
  local dk = dlvKey(id)
  local old = redis.call('HGET', dk, 'lease')
  local new = lease .. ':' .. id
  if old and old ~= new then
    redis.call('ZREM', dlvLeasesKey, old)
    redis.call('ZADD', dlvLeasesKey, 0, new)
    redis.call('HSET', dk, 'lease', new)
  end
end
return 0
