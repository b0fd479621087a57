-- ListDeliveries reads up to limit deliveries of a list index, in its
-- order, with the status when one is given.
--
-- KEYS: the index. ARGV: prefix, limit, status ('' for any).
-- Returns json, status, next, attempts, claim of each delivery.
local limit, status = tonumber(ARGV[2]), ARGV[3]
local out = {}
local n, offset = 0, 0
while n < limit do
  local page = redis.call('ZRANGE', KEYS[1], offset, offset + math.max(limit - n, 16) - 1)
  if #page == 0 then break end
  offset = offset + #page
  for _, m in ipairs(page) do
    local v = view(dlvKey(idOf(m)))
    if v[1] and (status == '' or v[2] == status) then
      append(out, v)
      n = n + 1
      if n == limit then break end
    end
  end
end
return out
