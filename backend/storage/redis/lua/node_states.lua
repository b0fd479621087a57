-- node_states: Redis's TIME and every node's beat, read together on the
-- server that holds the hash nodes (in a Cluster, TIME alone could be
-- answered by another), so that the beats are judged by the clock that
-- stamped them.
--
-- KEYS[1] nodes
-- ARGV[1] the deployment's prefix (unused)
-- Returns the seconds and microseconds of TIME, then each id and beat.
local t = redis.call('TIME')
local out = {t[1], t[2]}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
