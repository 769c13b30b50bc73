-- fueltank-redis: one decision per call, on Redis's clock.
--
-- KEYS[1]  the tank's state (a hash: parameters, `tat` or the log's length)
-- KEYS[2]  the grant log of a Window tank (a sorted set)
-- KEYS[3]  optional: the parameters of a keyed tank, shared by its keys
-- ARGV     op ('take' | 'build' | 'set'), then the caller's parameters
--          (max_n, per, hardcap, hold), the numbers derived from them
--          (interval t, mode, tolerance), the request (want, together,
--          life, guard, ahead), and the count then the members of
--          the Window batches the caller has finished. Times are integer
--          nanoseconds.
--
-- Every number handled here stays below 2^53, where Lua's doubles are exact
-- integers: times are kept relative to the current second (`ep`), and the
-- log's scores are absolute microseconds. Numbers are written with '%.0f'.

local clock = redis.call('TIME')
local sec = tonumber(clock[1])
local now = tonumber(clock[2]) * 1000
local op = ARGV[1]
local want, together = tonumber(ARGV[9]), tonumber(ARGV[10])
local life, guard = tonumber(ARGV[11]), tonumber(ARGV[12])
local ahead = tonumber(ARGV[13])

local function f(x) return string.format('%.0f', x) end

local FIELDS = {'n', 'per', 'cap', 'hold', 't', 'mode', 'tol'}
local function params_of(values)
  if not values[1] then return nil end
  local p = {}
  for i = 1, 7 do p[i] = tonumber(values[i]) end
  return p
end
local function same(a, b)
  return a[1] == b[1] and a[2] == b[2] and a[3] == b[3] and a[4] == b[4]
end
local function params_args(p)
  local args = {}
  for i = 1, 7 do
    args[#args + 1] = FIELDS[i]
    args[#args + 1] = f(p[i])
  end
  return args
end

local caller = {}
for i = 1, 7 do caller[i] = tonumber(ARGV[i + 1]) end

-- The parameters that rule: a keyed tank's shared ones, else the stored
-- ones (a 'set' replaces them, a 'build' must match them).
local state = redis.call('HMGET', KEYS[1], 'n', 'per', 'cap', 'hold', 't', 'mode', 'tol',
  'ep', 'tat', 'last', 'len', 'seq')
local stored = params_of(state)
local p
if #KEYS >= 3 then
  local shared = params_of(redis.call('HMGET', KEYS[3], unpack(FIELDS)))
  if shared and op == 'build' and not same(shared, caller) then
    return {2, shared[1], shared[2], shared[3], shared[4]}
  end
  if op == 'set' or not shared then
    p = caller
    redis.call('HSET', KEYS[3], unpack(params_args(p)))
  else
    p = shared
  end
  redis.call('PEXPIRE', KEYS[3], f(math.ceil(2 * p[2] / 1000000) + 60000))
  if op ~= 'take' then
    return {3, sec, now, p[1], p[2], p[3], p[4]}
  end
else
  if stored and op == 'build' and not same(stored, caller) then
    return {2, stored[1], stored[2], stored[3], stored[4]}
  end
  if op == 'set' or not stored then p = caller else p = stored end
end
local n, per, t, mode, tol, hold = p[1], p[2], p[5], p[6], p[7], p[4]
if life > hold then life = hold end

-- The state, moved to the current second. A missing state is a tank idle
-- for ever: full (GCRA), or an empty window.
local tat, len, seq = nil, 0, 0
if stored then
  local shift = (tonumber(state[8]) - sec) * 1000000000
  local last = tonumber(state[10]) + shift
  -- Redis's clock may step back; its time as seen here never does.
  if now < last then now = last end
  if state[9] then tat = tonumber(state[9]) + shift end
  len, seq = tonumber(state[11]) or 0, tonumber(state[12]) or 0
  if not same(stored, p) and tat and mode ~= 2 then
    -- New parameters: keep the fuel banked (or owed), counted in
    -- intervals, rounded towards less; no burst.
    local old_t, old_mode, old_tol = stored[5], stored[6], stored[7]
    local capped
    if old_mode == 1 then capped = math.max(tat, now) else capped = math.max(tat, now - old_tol) end
    tat = now + math.ceil((capped - now) / old_t * t) + 1
  end
else
  redis.call('DEL', KEYS[2])
end

local result
local function refuse(retry)
  result = {1, math.max(retry, 1), sec, now, n, per, p[3], hold}
end
local function grant(kind, g, first, spacing, unit_life, last_end)
  result = {0, kind, g, first, spacing, unit_life, last_end, sec, now, n, per, p[3], hold}
end

local expire_ms
if mode == 2 then
  -- Window: a log of (end of the grant's hold) -> "seq:count". A grant
  -- counts until its hold has ended and a whole period more has passed.
  local base_us = sec * 1000000
  -- Batches the caller will spend nothing more of: their hold ends now.
  local now_us = base_us + math.ceil(now / 1000)
  for i = 1, tonumber(ARGV[14]) do
    redis.call('ZADD', KEYS[2], 'XX', 'LT', f(now_us), ARGV[14 + i])
  end
  local horizon = base_us + math.floor((now - per) / 1000)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', horizon)
  for _, member in ipairs(gone) do
    len = len - tonumber(string.match(member, ':(%d+)$'))
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon) end
  if len < 0 then len = 0 end
  -- What is free now is granted now. A full window is granted ahead, in
  -- segments: as each oldest grant leaves, what it frees (up to `want` in
  -- all, no further than `ahead`). Each segment is logged as a grant of
  -- its own, counted from the time it may first be spent; `together`
  -- takes one segment, when that many are free at once.
  if op == 'take' and want > 0 then
    local segments, granted = {}, 0
    local function take(at, free)
      local c = math.min(want - granted, free - granted)
      if together > 0 then
        if free - granted < together then return end
        c = together
      end
      if c < 1 then return end
      seq = seq + 1
      redis.call('ZADD', KEYS[2], f(base_us + math.ceil((now + at + life) / 1000)), seq .. ':' .. c)
      len = len + c
      granted = granted + c
      segments[#segments + 1] = {at, c, seq}
    end
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local free, at = n - len, 0
    take(0, free)
    if granted < want then
      for i = 1, #entries, 2 do
        free = free + tonumber(string.match(entries[i], ':(%d+)$'))
        at = (tonumber(entries[i + 1]) - base_us) * 1000 + per - now
        if at > ahead then break end
        local same = entries[i + 3] ~= nil and entries[i + 3] == entries[i + 1]
        if not same then take(at, free) end
        if granted >= want then break end
      end
    end
    if granted == 0 then
      refuse(math.max(at - ahead, 1))
    else
      result = {0, 2, granted, 0, 0, life, 0, sec, now, n, per, p[3], hold, #segments}
      for _, segment in ipairs(segments) do
        for _, v in ipairs(segment) do result[#result + 1] = v end
      end
    end
  end
  expire_ms = 1000
  local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if newest[2] then
    expire_ms = math.ceil(((tonumber(newest[2]) - base_us) * 1000 - now + per) / 1000000) + 1000
    redis.call('PEXPIRE', KEYS[2], f(expire_ms))
  end
else
  if mode == 1 then
    -- Paced: a batch of `want` slots one interval apart, spent in order,
    -- then a guard before the next batch's first slot.
    if tat == nil or tat < now then tat = now end
    if op == 'take' and want > 0 then
      local last_end = tat + (want - 1) * t + guard
      grant(1, want, tat - now, t, 0, last_end - now)
      tat = last_end + t
    end
  else
    -- GCRA: forget fuel beyond the bank, then `together` at once from the
    -- bank, or a batch of `want` slots, some banked, some to come.
    if tat == nil or tat < now - tol then tat = now - tol end
    if op == 'take' and want > 0 then
      if together > 0 then
        -- All at once when the last is due: a burst GCRA allows then.
        local due = tat + (together - 1) * t
        if due - now > ahead then
          refuse(due - now - ahead)
        else
          grant(0, together, due - now, 0, life, 0)
          tat = tat + together * t
        end
      else
        grant(0, want, tat - now, t, life, 0)
        tat = tat + want * t
      end
    end
  end
  expire_ms = math.ceil((math.max(tat - now, 0) + per) / 1000000) + 1000
end

local fields = params_args(p)
for _, v in ipairs({'ep', f(sec), 'last', f(now), 'len', f(len), 'seq', f(seq)}) do
  fields[#fields + 1] = v
end
if tat then
  fields[#fields + 1] = 'tat'
  fields[#fields + 1] = f(tat)
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], f(expire_ms))
return result or {3, sec, now, n, per, p[3], hold}
