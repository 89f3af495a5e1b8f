"""The Lua scripts of the shared (Redis) admission: admit (and top up leases), push
(settlements and returned leases, batched), seed (a budget book from the ledger).

The layouts of their KEYS/ARGV are described above each script; `admit_call` and `push_call`
at the end build them, and replies.py reads their answers into typed records.

Data layout: a scope's requests/min and tokens/min buckets share one string key {level,
stamp} x 2, refilled from Redis' own clock (no replica clock skew), that expires after two
idle windows. Concurrency is a sorted set scored by start time: request ids, swept after
`PARALLEL_TTL_S`, and leased slots, scored so that they are swept `lease_ttl_s` after their
holder last refreshed them (a replica that died gives its leased slots back within that
time). Budget books are hashes {spent, reserved}, one per scope and window (35-day TTL, set
when the book is created); `reserved` includes the leases.
"""

from __future__ import annotations

from collections.abc import Sequence

from slipstream.tenancy.admission import BudgetScope, Scope
from slipstream.tenancy.shared.records import BookPush, RateAsk, RatePush
from slipstream.tenancy.shared.runner import Script

PARALLEL_TTL_S = 900
BUDGET_TTL_S = 3024000

# Shared by both scripts: Redis' clock, a bucket's refilled level, and a lease's size: none
# once less than a quarter of the limit would be left (near a limit every request is decided
# here, exactly), otherwise up to what the replica asked for (at most what leases.hold
# allows) and 1/16 of what is left, and none if that is less than one request's `unit`.
PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local function level(l, s, cap)
  l = tonumber(l)
  if l == nil then return cap end
  return math.min(cap, l + (now - tonumber(s)) * cap / 60)
end
local function grant(left, cap, want, unit)
  if want < unit or left < cap / 4 then return 0 end
  local g = math.min(math.floor(left / 16), want)
  if g < unit then return 0 end
  return g
end
local function fmt(l) return string.format('%.17g %.17g', l, now) end
"""

# Every redis.call inside a script costs the server ~1-2 µs on top of the command itself. So
# each rate scope keeps its two token buckets in one string "rpm_level rpm_stamp tpm_level
# tpm_stamp" ("x" = not tracked, i.e. full), stale slots are only swept when a scope is at its
# cap (the only time they could change a decision), and a budget book gets its TTL when it is
# created (its name ends in its window's start, and the TTL outlives the longest window).
# KEYS: per rate scope 2 keys (buckets, slot zset), then one book per budget.
# ARGV: tokens, request id, number of rate scopes, worst-case micro-dollars, take (1: admit
# the request; 0: only top up leases), slot member prefix, lease TTL, then per rate scope
# rpm, tpm, max_parallel (-1 = unlimited), requests, tokens and slots asked for, index of
# the first new slot member, then per budget its limit and micro-dollars asked for.
# Returns {1, 0, 0, '0'} + per rate scope {rpm left, tpm left, requests, tokens and slots
# granted} + per budget {spent, micro-dollars granted}: admitted, everything taken; or
# {0, index, why, wait, rpm left, tpm left, spent}: refused, nothing taken, by rate scope
# `index` (why 1 rpm, 2 tpm, 3 concurrency; `wait` seconds) or budget `index` (why 4).
ADMIT_LUA = (
    PRELUDE
    + """
local tokens = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local worst = tonumber(ARGV[4])
local take = ARGV[5] == '1'
local tk = take and 1 or 0
local lscore = now - __TTL__ + tonumber(ARGV[7])
local B = 8 + n * 7
local st = {}
for i = 0, n - 1 do
  local o = 8 + i * 7
  local rpm, tpm, par = tonumber(ARGV[o]), tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local a, b, c, d = 'x', '0', 'x', '0'
  local rl, tl, cnt = -1, -1, 0
  if rpm >= 0 or tpm >= 0 then
    local v = redis.call('GET', KEYS[1 + i * 2])
    if v then a, b, c, d = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$') end
    if rpm >= 0 then
      rl = level(a, b, rpm)
      if take and rl < 1 then return {0, i, 1, tostring((1 - rl) * 60 / rpm), tostring(rl), '0', 0} end
    end
    if tpm >= 0 then
      tl = level(c, d, tpm)
      local need = math.min(tokens, tpm)
      if take and tl < need then return {0, i, 2, tostring((need - tl) * 60 / tpm), tostring(rl), tostring(tl), 0} end
    end
  end
  if par >= 0 then
    local p = KEYS[2 + i * 2]
    cnt = redis.call('ZCARD', p)
    if take and cnt >= par then
      redis.call('ZREMRANGEBYSCORE', p, '-inf', now - __TTL__)
      cnt = redis.call('ZCARD', p)
      if cnt >= par then return {0, i, 3, '1', tostring(rl), tostring(tl), 0} end
    end
  end
  st[i] = {rl, tl, cnt, a .. ' ' .. b, c .. ' ' .. d}
end
local books = {}
for j = 1, #KEYS - n * 2 do
  local v = redis.call('HMGET', KEYS[n * 2 + j], 'spent', 'reserved')
  local spent = tonumber(v[1]) or 0
  local held = spent + (tonumber(v[2]) or 0)
  if take and held >= tonumber(ARGV[B + j * 2 - 2]) then return {0, j - 1, 4, '0', '0', '0', spent} end
  books[j] = {spent, held, v[1] == false and v[2] == false}
end
local out = {1, 0, 0, '0'}
for i = 0, n - 1 do
  local o = 8 + i * 7
  local rpm, tpm, par = tonumber(ARGV[o]), tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local x = st[i]
  local gr, gt, gp = 0, 0, 0
  if rpm >= 0 then
    x[1] = x[1] - tk
    gr = grant(x[1], rpm, tonumber(ARGV[o + 3]), 1)
    x[1] = x[1] - gr
  end
  if tpm >= 0 then
    x[2] = x[2] - tokens * tk
    gt = grant(x[2], tpm, tonumber(ARGV[o + 4]), math.max(tokens, 1))
    x[2] = x[2] - gt
  end
  if take or gr > 0 or gt > 0 then
    local r, ts = x[4], x[5]
    if rpm >= 0 then r = fmt(x[1]) end
    if tpm >= 0 then ts = fmt(x[2]) end
    if rpm >= 0 or tpm >= 0 then redis.call('SET', KEYS[1 + i * 2], r .. ' ' .. ts, 'EX', 120) end
  end
  if par >= 0 then
    local p = KEYS[2 + i * 2]
    if take then redis.call('ZADD', p, now, ARGV[2]) end
    gp = grant(par - x[3] - tk, par, tonumber(ARGV[o + 5]), 1)
    if gp > 0 then
      local add, first = {}, tonumber(ARGV[o + 6])
      for m = first, first + gp - 1 do
        add[#add + 1] = lscore
        add[#add + 1] = ARGV[6] .. m
      end
      redis.call('ZADD', p, unpack(add))
    end
    if take or gp > 0 then redis.call('EXPIRE', p, __TTL__) end
  end
  out[#out + 1] = tostring(x[1]); out[#out + 1] = tostring(x[2])
  out[#out + 1] = gr; out[#out + 1] = gt; out[#out + 1] = gp
end
for j = 1, #KEYS - n * 2 do
  local k, x = KEYS[n * 2 + j], books[j]
  local limit = tonumber(ARGV[B + j * 2 - 2])
  local gm = grant(limit - x[2] - worst * tk, limit, tonumber(ARGV[B + j * 2 - 1]), math.max(worst, 1))
  if take or gm > 0 then
    redis.call('HINCRBY', k, 'reserved', worst * tk + gm)
    if x[3] then redis.call('EXPIRE', k, __BUDGET_TTL__) end
  end
  out[#out + 1] = x[1]; out[#out + 1] = gm
end
return out
"""
)

# What settlements and leases owe Redis, for many requests at once.
# KEYS: per rate scope (buckets, slot zset), then one book per budget.
# ARGV: number of rate scopes, slot member prefix, lease TTL, then per rate scope rpm, tpm
# (-1 = unlimited), requests and tokens given back (tokens < 0: a usage debt), leased slot
# members [from, to) to remove, members 0 .. refresh-1 to keep alive, the number of request
# ids whose slots to free and those ids; then per budget the spend and the change of
# `reserved`. Returns each budget's spend after the push.
PUSH_LUA = (
    PRELUDE
    + """
local n = tonumber(ARGV[1])
local prefix = ARGV[2]
local lscore = now - __TTL__ + tonumber(ARGV[3])
local o = 4
for i = 0, n - 1 do
  local rpm, tpm = tonumber(ARGV[o]), tonumber(ARGV[o + 1])
  local dr, dt = tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  local lo, hi, refresh = tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
  local nids = tonumber(ARGV[o + 7])
  if (rpm >= 0 and dr ~= 0) or (tpm >= 0 and dt ~= 0) then
    local k = KEYS[1 + i * 2]
    local v = redis.call('GET', k)
    local a, b, c, d = 'x', '0', 'x', '0'
    if v then a, b, c, d = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$') end
    local r, ts = a .. ' ' .. b, c .. ' ' .. d
    if rpm >= 0 and dr ~= 0 then r = fmt(math.min(rpm, level(a, b, rpm) + dr)) end
    if tpm >= 0 and dt ~= 0 then ts = fmt(math.min(tpm, level(c, d, tpm) + dt)) end
    redis.call('SET', k, r .. ' ' .. ts, 'EX', 120)
  end
  local p = KEYS[2 + i * 2]
  local rem = {}
  for m = lo, hi - 1 do rem[#rem + 1] = prefix .. m end
  for m = 1, nids do rem[#rem + 1] = ARGV[o + 7 + m] end
  if #rem > 0 then redis.call('ZREM', p, unpack(rem)) end
  if refresh > 0 then
    local add = {}
    for m = 0, refresh - 1 do
      add[#add + 1] = lscore
      add[#add + 1] = prefix .. m
    end
    redis.call('ZADD', p, 'XX', unpack(add))
    redis.call('EXPIRE', p, __TTL__)
  end
  o = o + 8 + nids
end
local out = {}
for j = n * 2 + 1, #KEYS do
  if tonumber(ARGV[o + 1]) ~= 0 then redis.call('HINCRBY', KEYS[j], 'reserved', ARGV[o + 1]) end
  out[#out + 1] = redis.call('HINCRBY', KEYS[j], 'spent', ARGV[o])
  o = o + 2
end
return out
"""
)

SEED_LUA = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0
if tonumber(ARGV[1]) > spent then redis.call('HSET', KEYS[1], 'spent', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], __BUDGET_TTL__)
return 1
"""


def lua(script: str) -> str:
    """The script with its TTLs filled in."""
    return script.replace("__TTL__", str(PARALLEL_TTL_S)).replace(
        "__BUDGET_TTL__", str(BUDGET_TTL_S)
    )


ADMIT = Script(lua(ADMIT_LUA))
PUSH = Script(lua(PUSH_LUA))
SEED = Script(lua(SEED_LUA))


# -- the KEYS and ARGV of a call, as laid out above each script ----------------------------

RATE_PREFIX = "slipstream:rl:"
BUDGET_PREFIX = "slipstream:budget:"


def limit_arg(v: int | None) -> int:
    return -1 if v is None else v


def rate_keys(scopes: Sequence[Scope]) -> list[str]:
    """Per rate scope: its buckets string and its slot set."""
    keys = []
    for s in scopes:
        name = RATE_PREFIX + s.name
        keys += [name + ":b", name + ":p"]
    return keys


def admit_call(
    scopes: Sequence[Scope],
    tokens: int,
    request_id: str,
    named: Sequence[tuple[BudgetScope, str]],
    worst: int,
    asks: tuple[list[RateAsk], list[int]],
    prefix: str,
    lease_ttl_s: float,
) -> tuple[list[str], list[int | str]]:
    """ADMIT's keys and args: admit the request (no `request_id`: only top leases up)."""
    take = 1 if request_id else 0
    keys = rate_keys(scopes)
    args: list[int | str] = [tokens, request_id, len(scopes), worst, take, prefix]
    args.append(str(lease_ttl_s))
    for s, a in zip(scopes, asks[0], strict=True):
        args += [limit_arg(s.rpm), limit_arg(s.tpm), limit_arg(s.max_parallel)]
        args += [a.requests, a.tokens, a.slots, a.slots_from]
    for (bs, b), m in zip(named, asks[1], strict=True):
        keys.append(BUDGET_PREFIX + b)
        args += [bs.limit_micro, m]
    return keys, args


def push_call(
    rate: Sequence[RatePush], books: Sequence[BookPush], prefix: str, lease_ttl_s: float
) -> tuple[list[str], list[int | str]]:
    """PUSH's keys and args: what settlements and given-back leases owe Redis."""
    keys = rate_keys([p.scope for p in rate])
    args: list[int | str] = [len(rate), prefix, str(lease_ttl_s)]
    for p in rate:
        args += [limit_arg(p.scope.rpm), limit_arg(p.scope.tpm), p.requests, p.tokens]
        args += [p.slots_from, p.slots_to, p.refresh, len(p.ids), *p.ids]
    for b in books:
        keys.append(BUDGET_PREFIX + b.bucket)
        args += [b.spent, b.reserved]
    return keys, args
