-- Decisions of ratelimit.Decide (GCRA) for the account keys KEYS[1..n],
-- in that order, on Redis's clock, atomically: a node sends the decisions
-- of its concurrent requests in one call. A key may come more than once:
-- each decision sees the ones before it.
--
-- ARGV: now seconds and now nanoseconds to use instead of TIME (tests
-- only; '' and '' otherwise), then for each key its limit's interval
-- seconds, interval nanoseconds, window seconds, window nanoseconds.
--
-- Times are pairs of whole seconds and nanoseconds (0 <= ns < 1e9): Lua's
-- numbers are doubles, exact only up to 2^53, and a time in nanoseconds
-- since 1970 is about 2^61. On pairs, the arithmetic is Decide's to the
-- nanosecond. TIME has microseconds: now is in whole microseconds, one
-- instant for the whole call.
--
-- Each key holds the TAT in decimal nanoseconds since 1970 (as Memory
-- holds it), expiring when it passes: from then on it holds no
-- information, a missing key decides the same. A refused request writes
-- nothing.
--
-- Returns five numbers per key: {1, reset s, reset ns, 0, 0} when allowed
-- (Go derives Remaining from the reset time), {0, retry s, retry ns,
-- reset s, reset ns} when refused.

-- Redis before 7 replicates a script's commands only when asked; TIME makes
-- this script not replayable. From Redis 7 on this is the default.
if redis.replicate_commands then
  redis.replicate_commands()
end

local E = 1000000000

local function add(as, an, bs, bn)
  local s, n = as + bs, an + bn
  if n >= E then
    return s + 1, n - E
  end
  return s, n
end

local function sub(as, an, bs, bn)
  local s, n = as - bs, an - bn
  if n < 0 then
    return s - 1, n + E
  end
  return s, n
end

local function less(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

local now_s, now_n
if ARGV[1] ~= '' then
  now_s, now_n = tonumber(ARGV[1]), tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now_s, now_n = tonumber(t[1]), tonumber(t[2]) * 1000
end

-- A key that comes more than once is read once and written once: its TAT
-- is kept here between its decisions, and the last one admitted is
-- written at the end, as the last of its SETs would have left it.
-- (Tables of numbers by key, not a table per key: a call of distinct
-- keys, the usual case, allocates nothing per key.)
local read = {}             -- key -> true once read
local tat_ss, tat_ns = {}, {} -- key -> its TAT, absent when it holds none
local written = {}          -- keys admitted, in the order of their first admission
local reset_ss, reset_ns = {}, {} -- key -> the reset of its last admission

local out = {}
for i, key in ipairs(KEYS) do
  local a = 3 + (i - 1) * 4
  local interval_s, interval_n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local window_s, window_n = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])

  if not read[key] then
    read[key] = true
    local stored = redis.call('GET', key)
    if stored then
      local len = #stored
      local s = 0
      if len > 9 then
        s = tonumber(string.sub(stored, 1, len - 9))
      end
      local n = tonumber(string.sub(stored, -9))
      -- A value that is not a TAT (none should be) counts as none,
      -- rather than failing the other decisions of the call.
      if s and n then
        tat_ss[key], tat_ns[key] = s, n
      end
    end
  end
  local tat_s, tat_n = now_s, now_n
  local held_s, held_n = tat_ss[key], tat_ns[key]
  if held_s and less(now_s, now_n, held_s, held_n) then
    tat_s, tat_n = held_s, held_n
  end

  -- A TAT more than a window ahead was set under a stricter limit since
  -- raised: the raised limit holds at once, from a spent burst.
  local far_s, far_n = add(now_s, now_n, window_s, window_n)
  if less(far_s, far_n, tat_s, tat_n) then
    tat_s, tat_n = sub(far_s, far_n, interval_s, interval_n)
  end

  local next_s, next_n = add(tat_s, tat_n, interval_s, interval_n)
  local allow_s, allow_n = sub(next_s, next_n, window_s, window_n)
  local o = #out
  if less(now_s, now_n, allow_s, allow_n) then
    local retry_s, retry_n = sub(allow_s, allow_n, now_s, now_n)
    local reset_s, reset_n = sub(tat_s, tat_n, now_s, now_n)
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = 0, retry_s, retry_n, reset_s, reset_n
  else
    local reset_s, reset_n = sub(next_s, next_n, now_s, now_n)
    if not reset_ss[key] then
      written[#written + 1] = key
    end
    tat_ss[key], tat_ns[key] = next_s, next_n
    reset_ss[key], reset_ns[key] = reset_s, reset_n
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = 1, reset_s, reset_n, 0, 0
  end
end
for _, key in ipairs(written) do
  redis.call('SET', key, string.format('%d%09d', tat_ss[key], tat_ns[key]),
    'PX', string.format('%d', reset_ss[key] * 1000 + math.ceil(reset_ns[key] / 1000000)))
end
return out
