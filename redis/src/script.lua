-- fueltank-redis: one decision per call, on Redis's clock.
--
-- KEYS[1]  the state (a hash: parameters, `tat` or the log's length), or,
--          in scope 'p', a keyed tank's parameters (a hash)
-- KEYS[2]  the grant log of a Window tank (a sorted set); not in scope 'p'
-- KEYS[3]  the askers (a hash: instance id -> its latest ask, µs since the
--          epoch); not in scope 'p'
-- ARGV     op ('take' | 'build' | 'set' | 'check'), scope ('g': a global
--          tank's state, 'k': one key of a keyed tank, 'p': a keyed tank's
--          parameters), then the caller's parameters (max_n, per, hardcap,
--          hold), the numbers derived from them (interval t, mode,
--          tolerance), the generation it knows (birth, sets), the request
--          (want, together, life, guard, ahead), the caller's id (0: none),
--          and the count then the
--          members of the Window batches the caller has finished, then
--          the count of the tank's other rates (`also`: GCRA only), each
--          as max_n, per, interval, tolerance. Times are integer
--          nanoseconds.
--
-- The keys of one call share a hash slot, so that this runs on Redis
-- Cluster: a keyed tank's keys are each in their own slot, and no key's
-- call reads the tank's parameters (scope 'p'); instances check those
-- apart, at most once a second (see `keyed.rs`).
--
-- A generation tells a deliberate change of the parameters from another
-- limit built under the same name: `birth` (Redis's time in µs when the
-- state, or a keyed tank's parameters, were created), `sets` (how many
-- 'set's since) and the parameters it was created with (`o1`..`o4`). A
-- 'take' whose parameters differ from the stored ones adopts them only if
-- a 'set' made them from the caller's: a later one on the state it knows
-- (same birth, more sets), or any on a state made again (after a loss)
-- with the caller's parameters. Else the state was lost and made again by
-- another limit: the take is answered Mismatch, as a 'build' would be.
--
-- A keyed tank's key carries the generation of the tank's parameters (the
-- 'p' hash): a missing key is made with the caller's, and of two
-- generations the later rules: a caller that knows a later one than the
-- key's converts the key to its parameters (a 'set' the key has not seen
-- yet). A key stored under a later birth with other parameters is
-- answered Mismatch: only the tank's parameters can tell whether that
-- birth is another limit's or a 'set' from the caller's, and the caller
-- asks them ('check', which is a 'take' of this rule on the 'p' hash: a
-- missing one is made again with the caller's generation).
--
-- Every number handled here stays below 2^53, where Lua's doubles are exact
-- integers: times are kept relative to the current second (`ep`), and the
-- log's scores are absolute microseconds. Numbers are written with '%.0f'.

local clock = redis.call('TIME')
local sec = tonumber(clock[1])
local now = tonumber(clock[2]) * 1000
local op, scope = ARGV[1], ARGV[2]
local want, together = tonumber(ARGV[12]), tonumber(ARGV[13])
local life, guard = tonumber(ARGV[14]), tonumber(ARGV[15])
-- How far ahead a slot may start, in guards (or lives): the caller allows
-- its clock and Redis's to drift apart by 1/10000 of a distance.
local FAR = 2500
local ahead = tonumber(ARGV[16])
local asker = ARGV[17]
local finished = 18

local function f(x) return string.format('%.0f', x) end

-- The other rates: a GCRA each, their schedules `x1`, `x2`, ... beside
-- `tat`; which they are (`al`) is part of what the tank is.
local also_at = finished + 1 + tonumber(ARGV[finished])
local X, also_id = {}, {}
for i = 1, tonumber(ARGV[also_at] or '0') do
  local a = also_at + 4 * (i - 1)
  X[i] = {t = tonumber(ARGV[a + 3]), tol = tonumber(ARGV[a + 4]), per = tonumber(ARGV[a + 2])}
  also_id[i] = ARGV[a + 1] .. '/' .. ARGV[a + 2]
end
also_id = table.concat(also_id, ',')

local FIELDS = {'n', 'per', 'cap', 'hold', 't', 'mode', 'tol', 'gb', 'gs', 'o1', 'o2', 'o3', 'o4'}
local function params_of(values)
  if not values[1] then return nil end
  local p = {}
  for i = 1, #FIELDS do p[i] = tonumber(values[i]) or 0 end
  return p
end
local function same(a, b)
  return a[1] == b[1] and a[2] == b[2] and a[3] == b[3] and a[4] == b[4]
end
local function params_args(p)
  local args = {}
  for i = 1, #FIELDS do
    args[#args + 1] = FIELDS[i]
    args[#args + 1] = f(p[i])
  end
  return args
end

local caller = {}
for i = 1, 9 do caller[i] = tonumber(ARGV[i + 2]) end

-- Whether generation `a` is later than `b`.
local function later(a, b)
  return a[8] > b[8] or (a[8] == b[8] and a[9] > b[9])
end

-- What rules after this call, given what is stored (nil: nothing), or nil
-- if the caller's parameters are another limit's: a 'build' must match
-- them, a 'take' must match them or know the state they were 'set' on; a
-- 'set' replaces them (counted), a missing state is born with the caller's.
local function ruling(stored)
  if stored and not same(stored, caller) then
    local set_since
    if stored[8] == caller[8] then
      set_since = stored[9] > caller[9]
    else
      set_since = stored[9] > 0 and same({stored[10], stored[11], stored[12], stored[13]}, caller)
    end
    if op == 'build' or (op == 'take' and not set_since) then return nil end
  end
  if op ~= 'set' and stored then return stored end
  local p = {}
  for i = 1, 7 do p[i] = caller[i] end
  if stored then
    for i = 8, 13 do p[i] = stored[i] end
  else
    p[8], p[9] = sec * 1000000 + math.floor(now / 1000), 0
    for i = 1, 4 do p[9 + i] = caller[i] end
  end
  if op == 'set' then p[9] = p[9] + 1 end
  return p
end

-- The same for a key of a keyed tank ('take') or its parameters
-- ('check'), which carry the tank's generation: the later one rules.
local function keyed_ruling(stored)
  local p = {}
  for i = 1, 9 do p[i] = caller[i] end
  for i = 1, 4 do p[9 + i] = caller[i] end
  if not stored then return p end
  if same(stored, caller) or not later(caller, stored) then
    if not same(stored, caller) then
      -- A later generation with other parameters: a 'set' made from the
      -- caller's, or another limit's.
      local set_since = stored[8] == caller[8] or (scope == 'p' and stored[9] > 0
        and same({stored[10], stored[11], stored[12], stored[13]}, caller))
      if not set_since then return nil end
    end
    if later(caller, stored) then
      for i = 8, 9 do stored[i] = caller[i] end
    end
    return stored
  end
  -- The caller knows a later generation: its parameters rule.
  if stored[8] == caller[8] then
    for i = 10, 13 do p[i] = stored[i] end
  end
  return p
end
local function mismatch(stored)
  return {2, stored[1], stored[2], stored[3], stored[4], stored[8], stored[9]}
end

-- The parameters that rule.
local wanted = {unpack(FIELDS)}
for _, v in ipairs({'ep', 'tat', 'last', 'len', 'seq', 'al'}) do wanted[#wanted + 1] = v end
for i = 1, #X do wanted[#wanted + 1] = 'x' .. i end
local state = redis.call('HMGET', KEYS[1], unpack(wanted))
local S = #FIELDS
local stored = params_of(state)
local p
if scope == 'g' or op == 'build' or op == 'set' then
  p = ruling(stored)
else
  p = keyed_ruling(stored)
end
if not p or (stored and (state[S + 6] or '') ~= also_id) then return mismatch(stored) end
if scope == 'p' then
  -- A keyed tank's parameters: no fuel here. Kept two periods and a minute
  -- after the last instance's build, set or check.
  -- With the rates of `also` (`al`), part of what the tank is.
  redis.call('HSET', KEYS[1], 'al', also_id, unpack(params_args(p)))
  redis.call('PEXPIRE', KEYS[1], f(math.ceil(2 * p[2] / 1000000) + 60000))
  return {3, sec, now, p[1], p[2], p[3], p[4], p[8], p[9], 0}
end
local n, per, t, mode, tol, hold = p[1], p[2], p[5], p[6], p[7], p[4]
if life > hold then life = hold end

-- `⌈d·t / old_t⌉`: a distance `d` in intervals of `old_t`, in intervals
-- of `t`, rounded towards later (never more fuel), exactly as fueltank's
-- `set_rate`: in whole intervals (a double's quotient may be one off: it
-- is checked with exact products) and a remainder, whose product with `t`
-- is divided a bit of `t` at a time, every number below 2^53.
local function in_intervals(d, old_t, t)
  local whole = math.floor(d / old_t)
  if whole * old_t > d then whole = whole - 1 end
  if (whole + 1) * old_t <= d then whole = whole + 1 end
  local rest, bits = d - whole * old_t, t
  -- rest·(t − bits) = q·old_t + r, with 0 ≤ r < old_t.
  local q, r = 0, 0
  for i = 52, 0, -1 do
    q, r = 2 * q, 2 * r
    if r >= old_t then q, r = q + 1, r - old_t end
    if bits >= 2^i then
      bits = bits - 2^i
      r = r + rest
      if r >= old_t then q, r = q + 1, r - old_t end
    end
  end
  if r > 0 then q = q + 1 end
  return whole * t + q
end

-- The state, moved to the current second. A missing state is a tank idle
-- for ever: full (GCRA), or an empty window.
local tat, len, seq = nil, 0, 0
if stored then
  local shift = (tonumber(state[S + 1]) - sec) * 1000000000
  local last = tonumber(state[S + 3]) + shift
  -- Redis's clock may step back; its time as seen here never does.
  if now < last then now = last end
  if state[S + 2] then tat = tonumber(state[S + 2]) + shift end
  len, seq = tonumber(state[S + 4]) or 0, tonumber(state[S + 5]) or 0
  for i = 1, #X do
    if state[S + 6 + i] then X[i].tat = tonumber(state[S + 6 + i]) + shift end
  end
  if not same(stored, p) and tat and mode ~= 2 then
    -- New parameters: keep the fuel banked (or owed), counted in
    -- intervals, rounded towards less; no burst.
    local old_t, old_mode, old_tol = stored[5], stored[6], stored[7]
    local capped
    if old_mode == 1 then capped = math.max(tat, now) else capped = math.max(tat, now - old_tol) end
    tat = now + in_intervals(capped - now, old_t, t)
  end
else
  redis.call('DEL', KEYS[2])
  -- A new log's grants are numbered from its birth (µs): a batch of a
  -- state that expired or was lost (a `seq` counted from an earlier
  -- birth) is no member of this log, so its report ends nothing here.
  -- (Counted from 1, a report of `1:4` of the old state would end the
  -- hold of another instance's `1:4` of the new one.)
  seq = sec * 1000000 + math.floor(now / 1000)
end

-- The answer: its code and own numbers, then (but for Mismatch) Redis's
-- now, the parameters and generation that rule, the time until the state
-- is full (all of its capacity grantable at once), then a Window grant's
-- segments, or, for a GCRA with other rates, the time until each rate is
-- full (the first, then each of `also`).
local result, segments_out = {3}, {}
local function refuse(retry)
  result = {1, math.max(retry, 1)}
end
local function grant(kind, g, first, spacing, unit_life, last_end)
  result = {0, kind, g, first, spacing, unit_life, last_end}
end

-- Fair shares (`Limit`, `Unbounded`, `Window`). The askers are the
-- instances that asked within the last second. While there are several,
-- a batch (not `together`) is at most its share of a turn: what the rate
-- gives in 100 ms (or `ahead`, if less), over the askers, at least one.
-- Each instance asks again when it has spent half its batch, and a batch
-- is granted after those already granted, so greedy instances take turns
-- with equal batches: their shares differ by about a batch at most,
-- whatever their speeds, and each one's turn comes round in about 100 ms.
-- An instance that asks for less gets what it asks; one alone, its whole
-- batch. (`One` is left out: each of its batches costs a guard.)
if op == 'take' and want > 0 and together == 0 and asker ~= '0' and mode ~= 1 then
  local now_us = sec * 1000000 + math.floor(now / 1000)
  -- A sorted set by the time each last asked: counted without reading
  -- it whole, so a call costs the same for a thousand instances as for two.
  redis.call('ZADD', KEYS[3], f(now_us), asker)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', f(now_us - 1000000))
  local count = redis.call('ZCARD', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], 1000)
  if count > 1 then
    local turn = math.min(100000000, ahead)
    local share
    if mode == 2 then share = n * turn / per else share = turn / t end
    for i = 1, #X do share = math.min(share, turn / X[i].t) end
    want = math.min(want, math.max(1, math.floor(share / count)))
  end
end

local expire_ms, full, each = nil, 0, {}
if mode == 2 then
  -- Window: a log of (end of the grant's hold) -> "seq:count". A grant
  -- counts until its hold has ended and a whole period more has passed.
  local base_us = sec * 1000000
  -- Batches the caller will spend nothing more of: their hold ends now.
  local now_us = base_us + math.ceil(now / 1000)
  for i = 1, tonumber(ARGV[finished]) do
    redis.call('ZADD', KEYS[2], 'XX', 'LT', f(now_us), ARGV[finished + i])
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
      redis.call('ZADD', KEYS[2], f(base_us + math.ceil((now + at + life) / 1000)), f(seq) .. ':' .. c)
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
      grant(2, granted, 0, 0, life, 0)
      segments_out = {#segments}
      for _, segment in ipairs(segments) do
        for _, v in ipairs(segment) do segments_out[#segments_out + 1] = v end
      end
    end
  end
  expire_ms = 1000
  local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if newest[2] then
    -- Full (the log empty) once the newest grant has left the window.
    full = math.max((tonumber(newest[2]) - base_us) * 1000 - now + per, 0)
    expire_ms = math.ceil(full / 1000000) + 1000
    redis.call('PEXPIRE', KEYS[2], f(expire_ms))
  end
else
  if mode == 1 then
    -- Paced: a batch of `want` slots one interval apart, spent in order,
    -- then a guard before the next batch's first slot.
    if tat == nil or tat < now then tat = now end
    if op == 'take' and want > 0 then
      if tat - now > FAR * guard then
        -- A slot so far off that the clocks' allowed drift over the
        -- distance (1/5000 of it, both ends) eats half its guard could
        -- not be spent, and each ask would push the schedule on: refused
        -- until it is near enough.
        refuse(tat - now - FAR * guard)
      else
        local last_end = tat + (want - 1) * t + guard
        grant(1, want, tat - now, t, 0, last_end - now)
        tat = last_end + t
      end
    end
    full = tat - now
  else
    -- GCRA: forget fuel beyond the bank, then `together` at once from the
    -- bank, or a batch of `want` slots, some banked, some to come. Each
    -- other rate is such a schedule too: `together` is due when it is due
    -- under every one, a batch starts when every one has a slot and is
    -- spaced by the longest interval, and each schedule moves as those
    -- spends move it.
    if tat == nil or tat < now - tol then tat = now - tol end
    for _, x in ipairs(X) do
      if x.tat == nil or x.tat < now - x.tol then x.tat = now - x.tol end
    end
    if op == 'take' and want > 0 then
      if together > 0 then
        -- All at once when the last is due: a burst GCRA allows then.
        local due = tat + (together - 1) * t
        for _, x in ipairs(X) do due = math.max(due, x.tat + (together - 1) * x.t) end
        if due - now > ahead then
          refuse(due - now - ahead)
        else
          grant(0, together, due - now, 0, life, 0)
          tat = math.max(tat, due - tol) + together * t
          for _, x in ipairs(X) do x.tat = math.max(x.tat, due - x.tol) + together * x.t end
        end
      else
        local first, spacing = tat, t
        for _, x in ipairs(X) do
          first, spacing = math.max(first, x.tat), math.max(spacing, x.t)
        end
        if first - now > FAR * life then
          -- As for `Paced`, with the units' life for the guard.
          refuse(first - now - FAR * life)
        else
          grant(0, want, first - now, spacing, life, 0)
          local last = first + (want - 1) * spacing
          tat = math.max(tat + want * t, last - tol + t)
          for _, x in ipairs(X) do x.tat = math.max(x.tat + want * x.t, last - x.tol + x.t) end
        end
      end
    end
    full = math.max(tat + tol - now, 0)
    for _, x in ipairs(X) do full = math.max(full, x.tat + x.tol - now) end
    if #X > 0 then
      -- With other rates, each one's own time until full (the first's,
      -- then `x1`, ...): `n` are due when each rate has room for them,
      -- `tol − (n − 1)·t` before its own full, which the instance counts
      -- for any `n` (`full` alone tells only the last rate's).
      each = {math.max(tat + tol - now, 0)}
      for _, x in ipairs(X) do each[#each + 1] = math.max(x.tat + x.tol - now, 0) end
    end
  end
  -- Kept until full under every rate, plus a second: a missing state is
  -- a full one, so no state may expire sooner (a bank or burst longer
  -- than a period is full only at `tat + tol`, beyond `tat + per`). And,
  -- as the name's holder, no sooner than a period after each rate's
  -- schedule has caught up with now: a tank idle for less is still this
  -- limit's, not a free name another limit may take (a full state would
  -- otherwise go a second after its last call).
  local keep = math.max(full, math.max(tat - now, 0) + per)
  for _, x in ipairs(X) do keep = math.max(keep, math.max(x.tat - now, 0) + x.per) end
  expire_ms = math.ceil(keep / 1000000) + 1000
end

local fields = params_args(p)
for _, v in ipairs({'ep', f(sec), 'last', f(now), 'len', f(len), 'seq', f(seq)}) do
  fields[#fields + 1] = v
end
if tat then
  fields[#fields + 1] = 'tat'
  fields[#fields + 1] = f(tat)
end
if #X > 0 then
  fields[#fields + 1] = 'al'
  fields[#fields + 1] = also_id
  for i = 1, #X do
    if X[i].tat then
      fields[#fields + 1] = 'x' .. i
      fields[#fields + 1] = f(X[i].tat)
    end
  end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], f(expire_ms))
for _, v in ipairs({sec, now, n, per, p[3], hold, p[8], p[9], full}) do
  result[#result + 1] = v
end
for _, v in ipairs(segments_out) do result[#result + 1] = v end
for _, v in ipairs(each) do result[#result + 1] = v end
return result
