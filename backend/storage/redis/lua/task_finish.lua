-- Finish stores the end of a task that is not terminal, leased or queued
-- again, with its webhook deliveries (the outbox): all of it or nothing.
-- Only the claim the task was last given (its attempts) may end it.
--
-- ARGV: prefix, request id, end json, its member of task_completed, the
-- attempts of the claim, the deliveries (see checkNew), then the keys of
-- the quota counters the task gives a unit back to (refundQuotas), in
-- its account's slot.
-- Returns {'ok'}, {'notfound'} or {'exists', delivery id}.
local id = ARGV[2]
local tk = taskKey(id)
local v = redis.call('HMGET', tk, 'json', 'end', 'lease', 'type', 'acct', 'att')
if not v[1] or v[2] or tonumber(v[6]) ~= tonumber(ARGV[5]) then return {'notfound'} end
local dup = checkNew(6)
if dup then return {'exists', dup} end

if v[3] then
  redis.call('ZREM', taskLeasesKey, v[3])
  redis.call('HDEL', tk, 'lease')
else
  -- Queued again by Rescue while its worker was still at it: it must not
  -- run again.
  unqueue(v[4], v[5], id)
end
redis.call('HSET', tk, 'end', ARGV[3])
redis.call('ZADD', completedKey, '0', ARGV[4])
addDeliveries(6)
local refunds = {}
for i = 7 + tonumber(ARGV[6]) * DLV_FIELDS, #ARGV do refunds[#refunds + 1] = ARGV[i] end
refundQuotas(refunds, id)
return {'ok'}
