-- Decisions of ratelimit.Decide (GCRA) on Redis's clock, atomically: a
-- node sends the decisions of its concurrent requests in one call, those
-- of a key and limit together as one entry of n requests. The entries are
-- the keys KEYS[1..m], in that order; a key may come more than once, each
-- entry seeing the ones before it.
--
-- ARGV: now seconds and now nanoseconds to use instead of TIME (tests
-- only; '' and '' otherwise), then for each key n (its requests), ahead
-- (the tokens to lease once all n passed, 0 for none), the lease's life
-- in seconds and nanoseconds, its limit's interval seconds, interval
-- nanoseconds, window seconds, window nanoseconds.
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
-- The n requests of an entry, decided one after the other at one instant,
-- are its first k admitted and the rest refused: each admission moves
-- the TAT on by one interval from base, the TAT the first one sees, and
-- nothing moves it once one is refused. So an entry's answer is k and
-- base, from which Go derives each request's result (grant.result).
--
-- A lease of m tokens living until now + life is taken as m requests
-- arriving at that instant, from the later of it and the TAT: the node
-- may use them any time before it, and never after.
--
-- Returns now (seconds, nanoseconds), then six numbers per key: k, base
-- seconds, base nanoseconds, the tokens leased, the lease's base seconds
-- and nanoseconds (its i-th token has the TAT base + i intervals).

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

-- mul returns k times the pair (s, n), k a whole number (at most a few
-- million: k * n stays exact).
local function mul(k, s, n)
  local t = k * n
  local carry = math.floor(t / E)
  return k * s + carry, t - carry * E
end

-- A key that comes more than once is read once and written once: its TAT
-- is kept here between its entries, and written at the end as its last
-- admission left it. (Tables of numbers by key, not a table per key: a
-- call of distinct keys, the usual case, allocates nothing per key.)
local read = {}             -- key -> true once read
local tat_ss, tat_ns = {}, {} -- key -> its TAT, absent when it holds none
local admitted = {}         -- key -> true once one of its requests is admitted
local written = {}          -- those keys, in the order of their first admission

-- grant returns how many of n requests pass from the TAT base under the
-- interval and far (now + window): the k-th passes when base + k
-- intervals - window <= now, that is base + k intervals <= far. A
-- double's quotient is within one of it; the pairs settle it.
local function grant(n, base_s, base_n, interval_s, interval_n, far_s, far_n)
  local function fits(k)
    local s, ns = add(base_s, base_n, mul(k, interval_s, interval_n))
    return not less(far_s, far_n, s, ns)
  end
  if n <= 0 then return 0 end
  local room = (far_s - base_s) * E + (far_n - base_n)
  local step = interval_s * E + interval_n
  local k = math.max(0, math.min(n, math.floor(room / step)))
  while k > 0 and not fits(k) do k = k - 1 end
  while k < n and fits(k + 1) do k = k + 1 end
  return k
end

local out = {now_s, now_n}
for i, key in ipairs(KEYS) do
  local a = 3 + (i - 1) * 8
  local n, ahead = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local until_s, until_n = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local interval_s, interval_n = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local window_s, window_n = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])

  if not read[key] then
    read[key] = true
    local stored = redis.call('GET', key)
    if stored then
      local len = #stored
      local s = 0
      if len > 9 then
        s = tonumber(string.sub(stored, 1, len - 9))
      end
      local ns = tonumber(string.sub(stored, -9))
      -- A value that is not a TAT (none should be) counts as none,
      -- rather than failing the other decisions of the call.
      if s and ns then
        tat_ss[key], tat_ns[key] = s, ns
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

  local k = grant(n, tat_s, tat_n, interval_s, interval_n, far_s, far_n)
  local end_s, end_n = add(tat_s, tat_n, mul(k, interval_s, interval_n))

  -- The lease: once every request passed, up to ahead tokens more, taken
  -- as requests arriving at now + until would be (whenever the node uses
  -- them before then, it uses them early, as a burst does): they start
  -- from that instant or the TAT, whichever is later.
  local leased, lease_s, lease_n = 0, 0, 0
  if k == n and ahead > 0 then
    lease_s, lease_n = add(now_s, now_n, until_s, until_n)
    if less(lease_s, lease_n, end_s, end_n) then
      lease_s, lease_n = end_s, end_n
    end
    leased = grant(ahead, lease_s, lease_n, interval_s, interval_n, far_s, far_n)
    if leased > 0 then
      end_s, end_n = add(lease_s, lease_n, mul(leased, interval_s, interval_n))
    end
  end
  local o = #out
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] = k, tat_s, tat_n, leased, lease_s, lease_n
  if k + leased > 0 then
    if not admitted[key] then
      admitted[key] = true
      written[#written + 1] = key
    end
    tat_ss[key], tat_ns[key] = end_s, end_n
  end
end
for _, key in ipairs(written) do
  local reset_s, reset_n = sub(tat_ss[key], tat_ns[key], now_s, now_n)
  redis.call('SET', key, string.format('%d%09d', tat_ss[key], tat_ns[key]),
    'PX', string.format('%d', reset_s * 1000 + math.ceil(reset_n / 1000000)))
end
return out
