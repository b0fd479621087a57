-- List reads up to limit tasks of a list index, in its order.
--
-- KEYS: the index. ARGV: prefix, limit.
-- Returns json, end, attempts, rescues of each task.
local limit = tonumber(ARGV[2])
if limit <= 0 then return {} end
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, limit - 1)) do
  local v = redis.call('HMGET', taskKey(idOf(m)), 'json', 'end', 'att', 'rsc')
  if v[1] then
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
    out[#out + 1] = v[3]
    out[#out + 1] = v[4]
  end
end
return out
