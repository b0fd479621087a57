-- ExtendLeases moves the lease end of the tasks still leased; ids of tasks
-- not leased are ignored.
--
-- ARGV: prefix, lease end (hex), request ids.
local lease = ARGV[2]
for i = 3, #ARGV do
  local id = ARGV[i]
  local tk = taskKey(id)
  local old = redis.call('HGET', tk, 'lease')
  local new = lease .. ':' .. id
  if old and old ~= new then
    redis.call('ZREM', taskLeasesKey, old)
    redis.call('ZADD', taskLeasesKey, 0, new)
    redis.call('HSET', tk, 'lease', new)
  end
end
return 0
