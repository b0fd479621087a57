-- PurgeIdempotency deletes up to a batch of the idempotency records
-- created before a time.
--
-- ARGV: prefix, ZRANGEBYLEX bound of the time, batch.
-- Returns how many it deleted.
local ms = redis.call('ZRANGEBYLEX', idemAgeKey, '-', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(ms) do
  redis.call('DEL', idemKey(idOf(m)))
  redis.call('ZREM', idemAgeKey, m)
end
return #ms
