-- The prelude of every script of the store: keys, the byte order of
-- members, and the changes that several scripts share. The layout is
-- described in keys.go.
--
-- ARGV[1] is the store's prefix, its hash tag: every key built here starts
-- with it, so that all of them hash to the slot of the declared keys.
local P = ARGV[1]

-- Redis before 7 replicates a script's commands only when asked; TIME
-- (timeArg) makes a script not replayable. From Redis 7 on this is the
-- default.
if redis.replicate_commands then
  redis.replicate_commands()
end

-- lt tells whether a sorts before b as Redis orders the members of a
-- sorted set whose scores are equal: byte by byte (memcmp), not by the
-- locale, as Lua's < would.
local function lt(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  local i = 1
  -- Most pairs share a long start: skip it eight bytes at a time.
  while i + 7 <= n and string.sub(a, i, i + 7) == string.sub(b, i, i + 7) do
    i = i + 8
  end
  while i <= n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
    i = i + 1
  end
  return #a < #b
end

-- hexOf returns the 16 hex digits (keys.go) of the instant s seconds and
-- us microseconds after 1970, plus off nanoseconds (off may be negative,
-- |off| < 2^52). A double holds integers exactly only up to 2^53, and an
-- instant in nanoseconds is about 2^61: the sum is made in two 32-bit
-- halves.
local function hexOf(s, us, off)
  -- s * 1e9, with s = sh * 2^16 + sl and 1e9 = 15258 * 2^16 + 51712.
  local sh, sl = math.floor(s / 65536), s % 65536
  local mid = sh * 51712 + sl * 15258
  local hi = sh * 15258 + math.floor(mid / 65536)
  local lo = (mid % 65536) * 65536 + sl * 51712 + us * 1000 + off
  local carry = math.floor(lo / 4294967296)
  lo = lo - carry * 4294967296
  -- The sign bit flipped: an instant after 1970.
  hi = hi + carry + 2147483648
  return string.format('%08x%08x', hi, lo)
end

-- timeHex returns the 16 hex digits of the instant off nanoseconds after
-- Redis's TIME.
local function timeHex(off)
  local t = redis.call('TIME')
  return hexOf(tonumber(t[1]), tonumber(t[2]), off)
end

-- timeArg reads a time argument: 16 hex digits as they are, or "@<off>",
-- off nanoseconds after Redis's TIME.
local function timeArg(a)
  if string.sub(a, 1, 1) == '@' then return timeHex(tonumber(string.sub(a, 2))) end
  return a
end

-- boundArg reads a ZRANGEBYLEX bound "(<time>", its time as timeArg reads
-- it.
local function boundArg(a)
  return '(' .. timeArg(string.sub(a, 2))
end

-- idOf returns the id at the end of a time-ordered member
-- ("<16 hex digits>:<id>").
local function idOf(m) return string.sub(m, 18) end

-- part is a key part that another part follows.
local parts = {} -- s -> part(s), made once a call
local function part(s)
  local p = parts[s]
  if not p then
    p = string.format('%d:', #s) .. s
    parts[s] = p
  end
  return p
end

local function taskKey(id) return P .. 'task:' .. id end
local function accountQueueKey(typ, acct) return P .. 'task_aq:' .. part(typ) .. acct end
local function ringKey(typ) return P .. 'task_ring:' .. typ end
local depthKey = P .. 'task_depth'
local queuesKey = P .. 'task_queues'
-- The queue of a type before queues by account: task_migrate empties it.
local function legacyQueueKey(typ) return P .. 'task_queue:' .. typ end
local taskLeasesKey = P .. 'task_leases'
local completedKey = P .. 'task_completed'
local seqKey = P .. 'task_seq'
local function groupKey(acct, id) return P .. 'task_group:' .. part(acct) .. ':' .. id end
local function taskIDKey(acct, id) return P .. 'task_taskid:' .. part(acct) .. ':' .. id end
local function idemKey(ref) return P .. 'idem:' .. ref end
local idemAgeKey = P .. 'idem_age'

local function dlvKey(id) return P .. 'dlv:' .. id end
local function dueKey(url) return P .. 'dlv_due:' .. url end
local headsKey = P .. 'dlv_due_heads'
local dlvLeasesKey = P .. 'dlv_leases'
local endedKey = P .. 'dlv_ended'
local countsKey = P .. 'dlv_counts'
local function accountKey(acct) return P .. 'dlv_account:' .. acct end
local function requestKey(acct, rid) return P .. 'dlv_request:' .. part(acct) .. ':' .. rid end
local function statusKey(acct, st) return P .. 'dlv_status:' .. part(acct) .. ':' .. st end

-- first returns the first member of a sorted set, or nil.
local function first(key)
  return redis.call('ZRANGE', key, 0, 0)[1]
end

-- enqueue puts a task in its account's queue of its type at its number,
-- seq; an account that had nothing queued joins the back of the type's
-- ring, with the next number as its turn.
local function enqueue(typ, acct, seq, id)
  local aq = accountQueueKey(typ, acct)
  if redis.call('ZADD', aq, seq, id) == 0 then return end
  if redis.call('ZCARD', aq) == 1 then
    redis.call('ZADD', ringKey(typ), redis.call('INCR', seqKey), acct)
  end
  if redis.call('HINCRBY', depthKey, typ, 1) == 1 then redis.call('SADD', queuesKey, typ) end
end

-- lowerDepth counts a task out of its type's queue. The type stays in
-- task_queues while a node of the layout before queues by account still
-- has tasks of it in its queue, for task_migrate to find them.
local function lowerDepth(typ)
  if redis.call('HINCRBY', depthKey, typ, -1) <= 0 then
    redis.call('HDEL', depthKey, typ)
    if redis.call('EXISTS', legacyQueueKey(typ)) == 0 then
      redis.call('SREM', queuesKey, typ)
    end
  end
end

-- unqueue takes a queued task out of its account's queue; the account
-- keeps its turn unless it has nothing left.
local function unqueue(typ, acct, id)
  local aq = accountQueueKey(typ, acct)
  if redis.call('ZREM', aq, id) == 0 then return end
  if redis.call('EXISTS', aq) == 0 then redis.call('ZREM', ringKey(typ), acct) end
  lowerDepth(typ)
end

-- popTurn takes the oldest task of the account at the front of the type's
-- ring and sends the account to the back, or out of the ring when it has
-- nothing left. It returns the task's request id, or nil when nothing is
-- queued.
local function popTurn(typ)
  local ring = ringKey(typ)
  while true do
    local acct = first(ring)
    if not acct then return nil end
    local aq = accountQueueKey(typ, acct)
    local popped = redis.call('ZPOPMIN', aq, 1)
    if redis.call('EXISTS', aq) == 1 then
      redis.call('ZADD', ring, redis.call('INCR', seqKey), acct)
    else
      redis.call('ZREM', ring, acct)
    end
    if popped[1] then
      lowerDepth(typ)
      return popped[1]
    end
  end
end

-- requeue ends a task's lease, if it has one, and queues it again at its
-- place, counting the rescue of one whose lease ran out. It returns 1 when
-- it did.
local function requeue(id, rescued)
  local tk = taskKey(id)
  local v = redis.call('HMGET', tk, 'lease', 'type', 'seq', 'acct', 'end')
  if not v[1] then return 0 end
  redis.call('ZREM', taskLeasesKey, v[1])
  redis.call('HDEL', tk, 'lease')
  -- An ended task keeps its end: it is not queued again.
  if v[5] then return 0 end
  if rescued then redis.call('HINCRBY', tk, 'rsc', 1) end
  enqueue(v[2], v[4], v[3], id)
  return 1
end

-- addDue makes a delivery due: m is "<NextAt>:<id>". When it falls due
-- before the URL's other deliveries it becomes the URL's head.
local function addDue(dk, url, m)
  local uk = dueKey(url)
  local head = first(uk)
  if not head or lt(m, head) then
    if head then redis.call('ZREM', headsKey, head) end
    redis.call('ZADD', headsKey, '0', m)
  end
  redis.call('ZADD', uk, '0', m)
  redis.call('HSET', dk, 'due', m)
end

-- removeDue takes a due delivery out of its URL's due deliveries; the
-- URL's next one, if any, becomes its head in its place.
local function removeDue(dk, url, m)
  local uk = dueKey(url)
  local head = first(uk)
  redis.call('ZREM', uk, m)
  if head == m then
    redis.call('ZREM', headsKey, m)
    local nxt = first(uk)
    if nxt then redis.call('ZADD', headsKey, '0', nxt) end
  end
  redis.call('HDEL', dk, 'due')
end

-- setStatus moves a delivery from one status to another: its status list,
-- the counts and dlv_ended.
local function setStatus(dk, old, new)
  if old == new then return end
  local v = redis.call('HMGET', dk, 'acct', 'cm', 'em')
  redis.call('ZREM', statusKey(v[1], old), v[2])
  redis.call('ZADD', statusKey(v[1], new), 0, v[2])
  redis.call('HINCRBY', countsKey, old, -1)
  redis.call('HINCRBY', countsKey, new, 1)
  if old == 'pending' then
    redis.call('ZADD', endedKey, '0', v[3])
  elseif new == 'pending' then
    redis.call('ZREM', endedKey, v[3])
  end
  redis.call('HSET', dk, 'st', new)
end

-- The deliveries a script stores come in ARGV from index i on: their
-- number, then ten fields each.
local DLV_FIELDS = 10

-- checkNew returns the id of a delivery of ARGV from i on that is stored
-- already or given twice, or nil when all can be stored.
local function checkNew(i)
  local n = tonumber(ARGV[i])
  local seen = {}
  for j = 0, n - 1 do
    local id = ARGV[i + 1 + j * DLV_FIELDS]
    if seen[id] or redis.call('EXISTS', dlvKey(id)) == 1 then return id end
    seen[id] = true
  end
  return nil
end

-- addDeliveries stores the deliveries of ARGV from i on, pending and due;
-- checkNew vetted them.
local function addDeliveries(i)
  local n = tonumber(ARGV[i])
  for j = 0, n - 1 do
    local b = i + 1 + j * DLV_FIELDS
    local id, json, nxt, nts, att = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local acct, rid, url, cm, em = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ARGV[b + 9]
    local dk = dlvKey(id)
    redis.call('HSET', dk, 'json', json, 'st', 'pending', 'next', nxt, 'nts', nts, 'att', att,
      'acct', acct, 'rid', rid, 'url', url, 'cm', cm, 'em', em)
    addDue(dk, url, nts .. ':' .. id)
    redis.call('ZADD', accountKey(acct), '0', cm)
    if rid ~= '' then redis.call('ZADD', requestKey(acct, rid), 0, cm) end
    redis.call('ZADD', statusKey(acct, 'pending'), 0, cm)
  end
  if n > 0 then redis.call('HINCRBY', countsKey, 'pending', n) end
end

-- view returns what Go decodes a delivery from: five values.
local function view(dk)
  return redis.call('HMGET', dk, 'json', 'st', 'next', 'att', 'clm')
end

-- append adds the values of list to out.
local function append(out, list)
  for _, v in ipairs(list) do out[#out + 1] = v end
end

-- int formats an integer without an exponent.
local function int(n) return string.format('%d', n) end


-- refundQuotas gives one unit back to every stored quota counter of keys
-- above zero; with a request id, once per task (field r:<request id>
-- marks it). Returns 1 when a unit was given back, else 0. It never
-- fails, so that a script may call it after its first write: a key that
-- is not a counter (not a hash, or a count HINCRBY refuses) is passed
-- over.
local function refundQuotas(keys, rid)
  local refunded = 0
  for _, k in ipairs(keys) do
    if redis.call('TYPE', k).ok == 'hash' and
        (rid == '' or redis.call('HSETNX', k, 'r:' .. rid, 1) == 1) then
      refunded = 1
      local used = tonumber(redis.call('HGET', k, 'used') or '0')
      if used and used > 0 then
        redis.pcall('HINCRBY', k, 'used', -1)
      end
    end
  end
  return refunded
end
