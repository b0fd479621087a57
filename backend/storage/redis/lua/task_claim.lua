-- Claim leases up to n queued tasks of a type, the accounts with queued
-- tasks taking turns, and counts the attempt.
--
-- ARGV: prefix, type, n, lease end (a time argument: see timeArg).
-- Returns json, attempts, rescues of each task claimed, in the order
-- taken.
local typ, n, lease = ARGV[2], tonumber(ARGV[3]), timeArg(ARGV[4])
local out = {}
for _ = 1, n do
  local id = popTurn(typ)
  if not id then break end
  local tk = taskKey(id)
  local lm = lease .. ':' .. id
  local att = redis.call('HINCRBY', tk, 'att', 1)
  redis.call('HSET', tk, 'lease', lm)
  redis.call('ZADD', taskLeasesKey, '0', lm)
  local v = redis.call('HMGET', tk, 'json', 'rsc')
  out[#out + 1] = v[1]
  out[#out + 1] = att
  out[#out + 1] = v[2]
end
return out
