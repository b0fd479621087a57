-- Rescue queues again, each at its place, up to a batch of the tasks whose
-- lease ended before a time.
--
-- ARGV: prefix, ZRANGEBYLEX bound of the lease ends (see boundArg), batch.
-- Returns how many it queued.
local ms = redis.call('ZRANGEBYLEX', taskLeasesKey, '-', boundArg(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[3]))
local n = 0
for _, m in ipairs(ms) do
  local id = idOf(m)
  if redis.call('HGET', taskKey(id), 'lease') == m then
    n = n + requeue(id, true)
  else
    -- A lease its task no longer has: nothing to queue.
    redis.call('ZREM', taskLeasesKey, m)
  end
end
return n
