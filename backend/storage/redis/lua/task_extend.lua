-- ExtendLeases moves the lease end of the tasks still leased under the
-- claims given: a task not leased, or leased under another claim (other
-- attempts), is left alone.
--
-- ARGV: prefix, lease end (see timeArg), then request id and attempts of each
-- claim.
local lease = timeArg(ARGV[2])
for i = 3, #ARGV - 1, 2 do
  local id = ARGV[i]
  local tk = taskKey(id)
  local v = redis.call('HMGET', tk, 'lease', 'att')
  local old = v[1]
  local new = lease .. ':' .. id
  if old and old ~= new and tonumber(v[2]) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', taskLeasesKey, old)
    redis.call('ZADD', taskLeasesKey, '0', new)
    redis.call('HSET', tk, 'lease', new)
  end
end
return 0
