-- RetryDelivery makes an account's delivery pending and due at a time,
-- whatever its status; a leased one is made so when its attempt is
-- recorded. Every one is marked (retry), so that an attempt of its last
-- claim recorded late (after a rescue, or sent again once its answer was
-- lost) leaves it so; its next claim clears the mark.
--
-- ARGV: prefix, account, id, next (json), next (hex).
-- Returns {'ok', json, status, next, attempts, claim} or {'notfound'}.
local id = ARGV[3]
local dk = dlvKey(id)
local v = redis.call('HMGET', dk, 'acct', 'st', 'lease', 'url', 'due')
if not v[1] or v[1] ~= ARGV[2] then return {'notfound'} end
if v[3] then
elseif v[2] == 'pending' then
  removeDue(dk, v[4], v[5])
else
  setStatus(dk, v[2], 'pending')
end
redis.call('HSET', dk, 'next', ARGV[4], 'nts', ARGV[5], 'retry', '1')
if not v[3] then addDue(dk, v[4], ARGV[5] .. ':' .. id) end
local out = {'ok'}
append(out, view(dk))
return out
