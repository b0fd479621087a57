-- quota_refund: gives one unit back to every stored quota counter above
-- zero; with a request id, once per task (field r:<request id> marks it).
-- KEYS: the counters' hashes. ARGV[2]: the request id, or "".
-- Returns 1 when a unit was given back, else 0.
local rid = ARGV[2]
local refunded = 0
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 and
      (rid == '' or redis.call('HSETNX', KEYS[i], 'r:' .. rid, 1) == 1) then
    refunded = 1
    if tonumber(redis.call('HGET', KEYS[i], 'used') or '0') > 0 then
      redis.call('HINCRBY', KEYS[i], 'used', -1)
    end
  end
end
return refunded
