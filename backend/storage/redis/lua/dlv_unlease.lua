-- Unlease makes due again, where they were, the deliveries a claim that
-- failed had leased, unless something else happened to them since.
--
-- ARGV: prefix, lease end (hex), ids.
local lease = ARGV[2]
for i = 3, #ARGV do
  local id = ARGV[i]
  local dk = dlvKey(id)
  local v = redis.call('HMGET', dk, 'lease', 'url', 'nts')
  if v[1] == lease .. ':' .. id then
    redis.call('ZREM', dlvLeasesKey, v[1])
    redis.call('HDEL', dk, 'lease', 'retry')
    addDue(dk, v[2], v[3] .. ':' .. id)
  end
end
return 0
