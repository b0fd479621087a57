-- Migrate moves up to a batch of the tasks queued in the layout that came
-- before queues by account, one sorted set per type (task_queue:<type>),
-- into their accounts' queues, each keeping its number. The old queues are
-- found through task_queues, where nodes of that layout put every type
-- they queue and from which lowerDepth does not remove a type whose old
-- queue holds tasks.
--
-- ARGV: prefix, a bound that is not used, batch.
-- Returns how many it took out of the old queues.
local left = tonumber(ARGV[3])
local n = 0
for _, typ in ipairs(redis.call('SMEMBERS', queuesKey)) do
  if left <= 0 then break end
  local popped = redis.call('ZPOPMIN', legacyQueueKey(typ), left)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local v = redis.call('HMGET', taskKey(id), 'json', 'end', 'lease', 'type', 'seq', 'acct')
    -- A task that ended, is leased or lacks its bookkeeping (none should)
    -- is only dropped from the old queue.
    if v[1] and not v[2] and not v[3] and v[4] and v[5] and v[6] then
      enqueue(v[4], v[6], v[5], id)
    end
    n = n + 1
    left = left - 1
  end
end
return n
