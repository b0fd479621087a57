-- node_beat: stores a node's beat in the hash nodes, stamped with Redis's
-- TIME in microseconds: "<µs>|<state>", so that every node judges which
-- nodes are up by one clock.
--
-- KEYS[1] nodes
-- ARGV[1] the deployment's prefix (unused), ARGV[2] the node's id,
-- ARGV[3] its state (JSON)
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[2], t[1] .. string.format('%06d', tonumber(t[2])) .. '|' .. ARGV[3])
return 1
