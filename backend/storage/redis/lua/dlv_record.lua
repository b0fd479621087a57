-- RecordAttempt stores a pending delivery after an attempt, and the
-- deliveries that come with it (a failure notification): all or nothing.
-- A retry asked for since its claim keeps it pending, due at the time of
-- the request.
--
-- Only the claim the delivery was last given may record it.
--
-- ARGV: prefix, id, status, next (json), next (hex), attempts (json), the
-- number of the claim, then the deliveries to store (see checkNew).
-- Returns {'ok'}, {'notfound'} or {'exists', delivery id} (an id given
-- twice).
local id = ARGV[2]
local dk = dlvKey(id)
local v = redis.call('HMGET', dk, 'st', 'lease', 'retry', 'url', 'due', 'next', 'nts', 'clm')
if v[1] ~= 'pending' or (tonumber(v[8]) or 0) ~= tonumber(ARGV[7]) then return {'notfound'} end
-- The deliveries that come with a record are new (their ids are made for
-- it): one stored already means that this record was, and is sent again
-- because its answer was lost. It is not stored twice.
if tonumber(ARGV[8]) > 0 and redis.call('EXISTS', dlvKey(ARGV[9])) == 1 then return {'ok'} end
local dup = checkNew(8)
if dup then return {'exists', dup} end

if v[2] then
  redis.call('ZREM', dlvLeasesKey, v[2])
  redis.call('HDEL', dk, 'lease')
elseif v[5] then
  -- Rescued while its worker was still at it.
  removeDue(dk, v[4], v[5])
end
local st, nxt, nts = ARGV[3], ARGV[4], ARGV[5]
if v[3] then
  -- The mark stays until the next claim: a record of this claim sent
  -- again keeps the retry too.
  st, nxt, nts = 'pending', v[6], v[7]
end
redis.call('HSET', dk, 'att', ARGV[6], 'next', nxt, 'nts', nts)
setStatus(dk, 'pending', st)
if st == 'pending' then addDue(dk, v[4], nts .. ':' .. id) end
addDeliveries(8)
return {'ok'}
