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
local F = 12
local out = {}
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
    local seq = int(redis.call('INCR', seqKey))
    local fields = {'json', body, 'type', typ, 'att', att, 'seq', seq, 'acct', acct, 'lm', lm}
    if grp ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'grp', grp
      redis.call('ZADD', groupKey(acct, grp), 0, lm)
    end
    if tid ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'tid', tid
      redis.call('ZADD', taskIDKey(acct, tid), 0, lm)
    end
    redis.call('HSET', tk, unpack(fields))
    enqueue(typ, acct, seq, id)
    if ik then
      if oldAge then redis.call('ZREM', idemAgeKey, oldAge) end
      redis.call('HSET', ik, 'json', ARGV[b + 9], 'at', ARGV[b + 10])
      redis.call('ZADD', idemAgeKey, 0, ARGV[b + 10] .. ':' .. ref)
    end
  end
  out[#out + 1], out[#out + 2] = answer, replay
end
return out
