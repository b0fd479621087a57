-- RescueDeliveries makes due again, at their NextAt (the time of a retry
-- asked for during the lease, if any), up to a batch of the deliveries
-- whose lease ended before a time. A retry's mark stays, for the late
-- record of the attempt.
--
-- ARGV: prefix, ZRANGEBYLEX bound of the lease ends (see boundArg), batch.
-- Returns how many it made due.
local ms = redis.call('ZRANGEBYLEX', dlvLeasesKey, '-', boundArg(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[3]))
local n = 0
for _, m in ipairs(ms) do
  local id = idOf(m)
  local dk = dlvKey(id)
  redis.call('ZREM', dlvLeasesKey, m)
  local v = redis.call('HMGET', dk, 'lease', 'url', 'nts')
  if v[1] == m then
    redis.call('HDEL', dk, 'lease')
    addDue(dk, v[2], v[3] .. ':' .. id)
    n = n + 1
  end
end
return n
