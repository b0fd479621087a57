-- Unlease makes due again, where they were, the deliveries a claim that
-- failed had leased, each only while it is still leased under that claim
-- (its claim number): not one recorded, rescued or claimed again since.
--
-- ARGV: prefix, then the id and claim number of each delivery.
for i = 2, #ARGV - 1, 2 do
  local id = ARGV[i]
  local dk = dlvKey(id)
  local v = redis.call('HMGET', dk, 'lease', 'url', 'nts', 'clm')
  if v[1] and (tonumber(v[4]) or 0) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', dlvLeasesKey, v[1])
    redis.call('HDEL', dk, 'lease', 'retry')
    addDue(dk, v[2], v[3] .. ':' .. id)
  end
end
return 0
