-- Purge deletes up to limit records: terminal tasks completed before a
-- time, those completed first first, then ended deliveries created before
-- it, those created first first.
--
-- ARGV: prefix, ZRANGEBYLEX bound of the time, limit.
-- Returns how many it deleted.
local before, limit = ARGV[2], tonumber(ARGV[3])
local n = 0
if limit <= 0 then return 0 end
for _, m in ipairs(redis.call('ZRANGEBYLEX', completedKey, '-', before, 'LIMIT', 0, limit)) do
  local tk = taskKey(idOf(m))
  local v = redis.call('HMGET', tk, 'acct', 'grp', 'tid', 'lm')
  if v[2] then redis.call('ZREM', groupKey(v[1], v[2]), v[4]) end
  if v[3] then redis.call('ZREM', taskIDKey(v[1], v[3]), v[4]) end
  redis.call('DEL', tk)
  redis.call('ZREM', completedKey, m)
  n = n + 1
end
if n < limit then
  for _, m in ipairs(redis.call('ZRANGEBYLEX', endedKey, '-', before, 'LIMIT', 0, limit - n)) do
    local dk = dlvKey(idOf(m))
    local v = redis.call('HMGET', dk, 'acct', 'rid', 'st', 'cm')
    if v[1] then
      redis.call('ZREM', accountKey(v[1]), v[4])
      if v[2] ~= '' then redis.call('ZREM', requestKey(v[1], v[2]), v[4]) end
      redis.call('ZREM', statusKey(v[1], v[3]), v[4])
      redis.call('HINCRBY', countsKey, v[3], -1)
      redis.call('DEL', dk)
    end
    redis.call('ZREM', endedKey, m)
    n = n + 1
  end
end
return n
