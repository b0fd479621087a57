-- ClaimDeliveries, one round: it leases the deliveries Go's skip let
-- through in the round before (those still due where they were), then
-- walks the due deliveries earliest first (NextAt, then id) among the URLs
-- not turned down, and either returns them, for skip to be asked about, or
-- (without skip) leases them too.
--
-- The walk goes URL by URL: dlv_due_heads holds each URL's earliest due
-- delivery, and a URL's next one is read only once the one before was
-- walked past, so that a URL turned down costs one member of the heads
-- whatever its backlog.
--
-- ARGV: prefix, ZRANGEBYLEX bound of "due" (at or before now), lease end
-- (see timeArg), how many more the call may take, '1' to lease what the walk finds,
-- the number of URLs turned down and the URLs, the number of deliveries
-- let through and for each its id and its member of its URL's due set.
-- Returns {leased, walked}: json, status, next, attempts, claim number of
-- each delivery leased (its claims are counted in clm); id, URL, member of
-- each delivery walked and not leased.
local bound, lease, quota, takeAll = ARGV[2], timeArg(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local i = 6
local excluded = {}
for j = 1, tonumber(ARGV[i]) do excluded[ARGV[i + j]] = true end
i = i + tonumber(ARGV[i]) + 1

local leased = {}
local nLeased = 0
-- take leases a due delivery that is still where the walk saw it.
local function take(id, m)
  local dk = dlvKey(id)
  if redis.call('HGET', dk, 'due') ~= m then return end
  removeDue(dk, redis.call('HGET', dk, 'url'), m)
  local lm = lease .. ':' .. id
  redis.call('HSET', dk, 'lease', lm)
  redis.call('HINCRBY', dk, 'clm', 1)
  -- A new attempt answers a retry asked for before it.
  redis.call('HDEL', dk, 'retry')
  redis.call('ZADD', dlvLeasesKey, '0', lm)
  append(leased, view(dk))
  nLeased = nLeased + 1
end
for j = 1, tonumber(ARGV[i]) do
  take(ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
quota = quota - nLeased

local walked = {}
if quota > 0 then
  -- The heads are read a page at a time, in order; the next due delivery
  -- of each URL walked is in pending.
  local page, pi, offset = {}, 1, 0
  local head
  local function nextHead()
    while true do
      if pi > #page then
        page = redis.call('ZRANGEBYLEX', headsKey, '-', bound, 'LIMIT', offset, 64)
        offset, pi = offset + #page, 1
        if #page == 0 then return nil end
      end
      local m = page[pi]
      pi = pi + 1
      local url = redis.call('HGET', dlvKey(idOf(m)), 'url')
      if url and not excluded[url] then return {m = m, url = url} end
    end
  end
  head = nextHead()
  local pending = {}
  while #walked < quota do
    local best
    for k, p in ipairs(pending) do
      if not best or lt(p.m, pending[best].m) then best = k end
    end
    local d
    if head and (not best or lt(head.m, pending[best].m)) then
      d = head
      head = nextHead()
    elseif best then
      d = table.remove(pending, best)
    else
      break
    end
    walked[#walked + 1] = d
    local nxt = redis.call('ZRANGEBYLEX', dueKey(d.url), '(' .. d.m, bound, 'LIMIT', 0, 1)[1]
    if nxt then pending[#pending + 1] = {m = nxt, url = d.url} end
  end
end

local found = {}
if takeAll then
  -- Taken only now: taking moves the heads the walk pages through.
  for _, d in ipairs(walked) do take(idOf(d.m), d.m) end
else
  for _, d in ipairs(walked) do
    found[#found + 1] = idOf(d.m)
    found[#found + 1] = d.url
    found[#found + 1] = d.m
  end
end
return {leased, found}
