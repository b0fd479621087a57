-- Create stores tasks, each queued at the tail of its account's queue of
-- its type, or answered with a live idempotency record of the same account
-- and key. A node sends the creations of its concurrent requests in one
-- call; each is decided as it would be alone, in order.
--
-- ARGV: prefix, the number of tasks, then twelve fields per task: request
-- id, json, type, attempts, account, group id, task id, list member,
-- idempotency ref ('' without a record), its json, its creation (hex), the
-- oldest creation still live (hex).
-- Returns two values per task: 'ok', 'exists' or 'replay', and the
-- record's json for a replay ('' otherwise).
--
-- What the tasks of a call share is read and written once for the call:
-- the counter of seqs and turns (kept here, stored at the end with the
-- values one INCR per task would have left), each type's depth (added at
-- the end), whether each account's queue had tasks before, and the
-- members added to a sorted set (a group's, a task id's, an account
-- queue's), added at the end with one ZADD per set. Whether any task
-- exists already is one EXISTS of all their keys; only when one does is
-- each looked up.
local F = 12
local n = tonumber(ARGV[2])
local out = {}
local seq = tonumber(redis.call('GET', seqKey) or '0')
local seq0 = seq
local added = {}   -- type -> tasks queued by this call
local queueType = {} -- account queue key -> its type
local types = {}   -- the types of added, in order
local queued = {}  -- account queue key -> whether it has tasks
local made = {}    -- task key -> true once created by this call
local zsets = {}   -- sorted set key -> its new scores and members, in turn
local zkeys = {}   -- the keys of zsets, in order
local function zadd(key, score, member)
  local z = zsets[key]
  if not z then
    z = {}
    zsets[key] = z
    zkeys[#zkeys + 1] = key
  end
  z[#z + 1], z[#z + 2] = score, member
end
local lookEach = true
if n > 1 then
  local tks = {}
  for i = 0, n - 1 do tks[i + 1] = taskKey(ARGV[3 + i * F]) end
  lookEach = redis.call('EXISTS', unpack(tks)) > 0
end
for i = 0, n - 1 do
  local b = 3 + i * F
  local id, body, typ, att, acct = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local grp, tid, lm, ref = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
  local answer, replay = 'ok', ''
  local ik, oldAge
  if ref ~= '' then
    ik = idemKey(ref)
    local at = redis.call('HGET', ik, 'at')
    if at then
      if not lt(at, ARGV[b + 11]) then
        answer, replay = 'replay', redis.call('HGET', ik, 'json')
      else
        -- Expired: the key starts a new life below.
        oldAge = at .. ':' .. ref
      end
    end
  end
  local tk = taskKey(id)
  if answer == 'ok' and (made[tk] or (lookEach and redis.call('EXISTS', tk) == 1)) then answer = 'exists' end
  if answer == 'ok' then
    seq = seq + 1
    local taskSeq = int(seq)
    local fields = {'json', body, 'type', typ, 'att', att, 'seq', taskSeq, 'acct', acct, 'lm', lm}
    if grp ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'grp', grp
      zadd(groupKey(acct, grp), '0', lm)
    end
    if tid ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'tid', tid
      zadd(taskIDKey(acct, tid), '0', lm)
    end
    redis.call('HSET', tk, unpack(fields))
    made[tk] = true
    -- enqueue (prelude.lua), with what the call shares kept here: an
    -- account whose queue was empty takes its turn after its first task.
    local aq = accountQueueKey(typ, acct)
    if queued[aq] == nil then queued[aq] = redis.call('ZCARD', aq) > 0 end
    zadd(aq, taskSeq, id)
    if not queued[aq] then
      seq = seq + 1
      redis.call('ZADD', ringKey(typ), int(seq), acct)
      queued[aq] = true
    end
    if not added[typ] then
      added[typ] = 0
      types[#types + 1] = typ
    end
    queueType[aq] = typ
    if ik then
      if oldAge then redis.call('ZREM', idemAgeKey, oldAge) end
      redis.call('HSET', ik, 'json', ARGV[b + 9], 'at', ARGV[b + 10])
      redis.call('ZADD', idemAgeKey, '0', ARGV[b + 10] .. ':' .. ref)
    end
  end
  out[#out + 1], out[#out + 2] = answer, replay
end
for _, key in ipairs(zkeys) do
  local n = redis.call('ZADD', key, unpack(zsets[key]))
  -- A task counts in its type's depth once in its queue (as enqueue does).
  local typ = queueType[key]
  if typ then added[typ] = added[typ] + n end
end
if seq ~= seq0 then redis.call('SET', seqKey, int(seq)) end
for _, typ in ipairs(types) do
  if added[typ] > 0 and redis.call('HINCRBY', depthKey, typ, added[typ]) == added[typ] then redis.call('SADD', queuesKey, typ) end
end
return out
