-- Release queues leased tasks again, each at its place, but only while it
-- is leased under the claim that returned it (the same attempts); tasks
-- not leased, or leased under a later claim, are ignored.
--
-- ARGV: prefix, then request id and attempts of each task.
for i = 2, #ARGV - 1, 2 do
  local id = ARGV[i]
  if tonumber(redis.call('HGET', taskKey(id), 'att')) == tonumber(ARGV[i + 1]) then
    requeue(id, false)
  end
end
return 0
