-- ExtendDeliveryLeases moves the lease end of the deliveries still leased
-- under the claims given: a delivery not leased, or leased under a later
-- claim, is left alone.
--
-- ARGV: prefix, lease end (see timeArg), then id and claim number of each claim.
local lease = timeArg(ARGV[2])
for i = 3, #ARGV - 1, 2 do
  local id = ARGV[i]
  local dk = dlvKey(id)
  local v = redis.call('HMGET', dk, 'lease', 'clm')
  local old = v[1]
  local new = lease .. ':' .. id
  if old and old ~= new and (tonumber(v[2]) or 0) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', dlvLeasesKey, old)
    redis.call('ZADD', dlvLeasesKey, '0', new)
    redis.call('HSET', dk, 'lease', new)
  end
end
return 0
