-- Claim leases up to n queued tasks of a type, the accounts with queued
-- tasks taking turns, and counts the attempt.
--
-- ARGV: prefix, type, n, lease end (a time argument: see timeArg).
-- Returns json, attempts, rescues of each task claimed, in the order
-- taken.
local typ, n, lease = ARGV[2], tonumber(ARGV[3]), timeArg(ARGV[4])
local out = {}
local claimed = 0
while claimed < n do
  local id = popTurn(typ)
  if not id then break end
  local tk = taskKey(id)
  local v = redis.call('HMGET', tk, 'json', 'end', 'rsc')
  -- A task ended or deleted while it was queued (as a node of the release
  -- before queues by account could leave one) leaves its queue and does
  -- not run again.
  if v[1] and not v[2] then
    local lm = lease .. ':' .. id
    local att = redis.call('HINCRBY', tk, 'att', 1)
    redis.call('HSET', tk, 'lease', lm)
    redis.call('ZADD', taskLeasesKey, '0', lm)
    out[#out + 1] = v[1]
    out[#out + 1] = att
    out[#out + 1] = v[3]
    claimed = claimed + 1
  end
end
return out
