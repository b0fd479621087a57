-- Release queues leased tasks again, each at its place; ids of tasks not
-- leased are ignored.
--
-- ARGV: prefix, request ids.
for i = 2, #ARGV do requeue(ARGV[i]) end
return 0
