-- Claim leases up to n queued tasks of a type, first queued first, and
-- counts the attempt.
--
-- ARGV: prefix, type, n, lease end (hex).
-- Returns json, attempts of each task claimed, in queue order.
local typ, n, lease = ARGV[2], tonumber(ARGV[3]), ARGV[4]
if n <= 0 then return {} end
local q = queueKey(typ)
local popped = redis.call('ZPOPMIN', q, n)
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local tk = taskKey(id)
  local lm = lease .. ':' .. id
  local att = redis.call('HINCRBY', tk, 'att', 1)
  redis.call('HSET', tk, 'lease', lm)
  redis.call('ZADD', taskLeasesKey, 0, lm)
  out[#out + 1] = redis.call('HGET', tk, 'json')
  out[#out + 1] = att
end
if redis.call('EXISTS', q) == 0 then redis.call('SREM', queuesKey, typ) end
return out
