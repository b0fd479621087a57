-- Create stores a task and queues it at the tail of its account's queue of
-- its type, or
-- answers with a live idempotency record of the same account and key.
--
-- ARGV: prefix, request id, json, type, attempts, account, group id, task
-- id, list member, idempotency ref ('' without a record), its json, its
-- creation (hex), the oldest creation still live (hex).
-- Returns {'ok'}, {'exists'} or {'replay', record json}.
local id, typ, acct, grp, tid, lm = ARGV[2], ARGV[4], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ref = ARGV[10]
local ik, oldAge
if ref ~= '' then
  ik = idemKey(ref)
  local at = redis.call('HGET', ik, 'at')
  if at then
    if not lt(at, ARGV[13]) then
      return {'replay', redis.call('HGET', ik, 'json')}
    end
    -- Expired: the key starts a new life below.
    oldAge = at .. ':' .. ref
  end
end
local tk = taskKey(id)
if redis.call('EXISTS', tk) == 1 then return {'exists'} end

local seq = int(redis.call('INCR', seqKey))
redis.call('HSET', tk, 'json', ARGV[3], 'type', typ, 'att', ARGV[5], 'seq', seq, 'acct', acct, 'lm', lm)
if grp ~= '' then
  redis.call('HSET', tk, 'grp', grp)
  redis.call('ZADD', groupKey(acct, grp), 0, lm)
end
if tid ~= '' then
  redis.call('HSET', tk, 'tid', tid)
  redis.call('ZADD', taskIDKey(acct, tid), 0, lm)
end
enqueue(typ, acct, seq, id)
if ik then
  if oldAge then redis.call('ZREM', idemAgeKey, oldAge) end
  redis.call('HSET', ik, 'json', ARGV[11], 'at', ARGV[12])
  redis.call('ZADD', idemAgeKey, 0, ARGV[12] .. ':' .. ref)
end
return {'ok'}
