-- quota_spend: spends one unit of every quota counter, or none.
-- KEYS: the counters' hashes (field used).
-- ARGV[2*i], ARGV[2*i+1]: the limit of KEYS[i] and when it may go (Unix
-- seconds, EXPIREAT).
-- Returns {spent (1 or 0), index of the first counter at its limit
-- (0-based, or -1), the units of each counter (after the spend when
-- spent)}.
local out = {1, -1}
for i = 1, #KEYS do
  local used = tonumber(redis.call('HGET', KEYS[i], 'used') or '0')
  out[i + 2] = used
  if out[1] == 1 and used >= tonumber(ARGV[2 * i]) then
    out[1], out[2] = 0, i - 1
  end
end
if out[1] == 0 then return out end
for i = 1, #KEYS do
  out[i + 2] = redis.call('HINCRBY', KEYS[i], 'used', 1)
  redis.call('EXPIREAT', KEYS[i], ARGV[2 * i + 1])
end
return out
