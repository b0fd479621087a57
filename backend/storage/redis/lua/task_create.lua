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
-- the end) and whether each account's queue had tasks before.
local F = 12
local out = {}
local seq = tonumber(redis.call('GET', seqKey) or '0')
local seq0 = seq
local added = {}   -- type -> tasks queued by this call
local types = {}   -- the types of added, in order
local queued = {}  -- account queue key -> true once known not empty
for i = 0, tonumber(ARGV[2]) - 1 do
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
  if answer == 'ok' and redis.call('EXISTS', tk) == 1 then answer = 'exists' end
  if answer == 'ok' then
    seq = seq + 1
    local taskSeq = int(seq)
    local fields = {'json', body, 'type', typ, 'att', att, 'seq', taskSeq, 'acct', acct, 'lm', lm}
    if grp ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'grp', grp
      redis.call('ZADD', groupKey(acct, grp), 0, lm)
    end
    if tid ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'tid', tid
      redis.call('ZADD', taskIDKey(acct, tid), 0, lm)
    end
    redis.call('HSET', tk, unpack(fields))
    -- enqueue (prelude.lua), with what the call shares kept here.
    local aq = accountQueueKey(typ, acct)
    if redis.call('ZADD', aq, taskSeq, id) == 1 then
      if not queued[aq] and redis.call('ZCARD', aq) == 1 then
        seq = seq + 1
        redis.call('ZADD', ringKey(typ), int(seq), acct)
      end
      queued[aq] = true
      if not added[typ] then
        added[typ] = 0
        types[#types + 1] = typ
      end
      added[typ] = added[typ] + 1
    end
    if ik then
      if oldAge then redis.call('ZREM', idemAgeKey, oldAge) end
      redis.call('HSET', ik, 'json', ARGV[b + 9], 'at', ARGV[b + 10])
      redis.call('ZADD', idemAgeKey, 0, ARGV[b + 10] .. ':' .. ref)
    end
  end
  out[#out + 1], out[#out + 2] = answer, replay
end
if seq ~= seq0 then redis.call('SET', seqKey, int(seq)) end
for _, typ in ipairs(types) do
  if redis.call('HINCRBY', depthKey, typ, added[typ]) == added[typ] then redis.call('SADD', queuesKey, typ) end
end
return out
