-- node_beat: stores a node's beat in the hash nodes, stamped with Redis's
-- TIME in microseconds: "<µs>|<state>", so that every node judges which
-- nodes are up by one clock. It forgets the beats silent for longer than
-- ARGV[4] microseconds (nodes killed without leaving): the hash does not
-- grow with every node ever killed, whether or not a node lists them.
--
-- KEYS[1] nodes
-- ARGV[1] the deployment's prefix (unused), ARGV[2] the node's id,
-- ARGV[3] its state (JSON), ARGV[4] how long a silent beat is kept (µs)
local t = redis.call('TIME')
local keep = tonumber(ARGV[4] or '')
if keep and keep > 0 then
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local at = tonumber(string.match(all[i + 1], '^(%d+)|') or '')
    if at == nil or now - at > keep then redis.call('HDEL', KEYS[1], all[i]) end
  end
end
redis.call('HSET', KEYS[1], ARGV[2], t[1] .. string.format('%06d', tonumber(t[2])) .. '|' .. ARGV[3])
return 1
