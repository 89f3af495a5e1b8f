"""Rate limits and budgets shared by every replica through Redis: one script call to admit a
request, one to settle it.

Admission checks every rate-limit bucket of the request (key, team, model) and every budget
book (key, team, org), then takes from all of them, atomically in one Lua script, so a
request refused by any of them takes nothing (see admission.py). Settlement corrects the
token estimate, frees the concurrency slot and replaces the budget reservation with the real
cost in one more script call, run in the background after the answer was sent.

A scope's requests/min and tokens/min buckets share one string key {level, stamp} x 2,
refilled from Redis' own clock (no replica clock skew), that expires after two idle windows.
Concurrency is a sorted set of request ids scored by start time, so slots held by a replica
that died are reclaimed after `PARALLEL_TTL_S`. Budget books are hashes {spent, reserved},
one per scope and window (35-day TTL, set when the book is created).

While Redis is unreachable the guard switches to this replica's in-memory books
(`fallback`), so Redis is never a single point of failure.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from slipstream.store.records import utcnow
from slipstream.tenancy.admission import Admitted, LocalAdmission
from slipstream.tenancy.budgets import (
    BudgetPlan,
    BudgetScope,
    Crossing,
    MemoryBudgets,
    Refusal,
    Reservation,
    bucket_name,
    window_end,
)
from slipstream.tenancy.ratelimit import Decision, MemoryLimiter, Scope, rate_headers
from slipstream.tenancy.redis_guard import RedisGuard
from slipstream.tenancy.redis_wire import RedisWire

PARALLEL_TTL_S = 900
RATE_PREFIX = "slipstream:rl:"
BUDGET_PREFIX = "slipstream:budget:"
BUDGET_TTL_S = 3024000

# Every redis.call inside a script costs the server ~1-2 µs on top of the command itself, which
# made these scripts most of what a request costs Redis. So each rate scope keeps its two token
# buckets in one string "rpm_level rpm_stamp tpm_level tpm_stamp" (a GET and a SET with EX, not
# two HMGET/HSET/EXPIRE each; "x" = not tracked, i.e. full), stale concurrency slots are only
# swept when a scope is at its cap (the only time they could change a decision), and a budget
# book gets its TTL when it is created (its name ends in its window's start, and the TTL outlives
# the longest window).
# KEYS: per rate scope 2 keys (buckets, parallel zset), then one book per budget.
# ARGV: tokens, request_id, number of rate scopes, worst-case micro-dollars, then per rate
# scope rpm, tpm, max_parallel (-1 = unlimited), then per budget its limit.
# Returns {ok, index, why, wait, rpm left, tpm left, spent}: ok 1 = admitted, everything taken
# (the levels are those of the first rate scope); ok 0 = refused, nothing taken, by rate scope
# `index` (why 1 rpm, 2 tpm, 3 concurrency; `wait` seconds) or budget `index` (why 4, `spent`).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tokens = tonumber(ARGV[1])
local rid = ARGV[2]
local n = tonumber(ARGV[3])
local levels = {}
local function level(l, s, cap)
  l = tonumber(l)
  if l == nil then return cap end
  return math.min(cap, l + (now - tonumber(s)) * cap / 60)
end
for i = 0, n - 1 do
  local rpm = tonumber(ARGV[5 + i * 3]); local tpm = tonumber(ARGV[6 + i * 3])
  local par = tonumber(ARGV[7 + i * 3])
  local rl, tl = -1, -1
  if rpm >= 0 or tpm >= 0 then
    local v = redis.call('GET', KEYS[1 + i * 2])
    local a, b, c, d = 'x', 0, 'x', 0
    if v then a, b, c, d = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$') end
    if rpm >= 0 then
      rl = level(a, b, rpm)
      if rl < 1 then return {0, i, 1, tostring((1 - rl) * 60 / rpm), tostring(rl), '0', 0} end
    end
    if tpm >= 0 then
      tl = level(c, d, tpm)
      local need = math.min(tokens, tpm)
      if tl < need then return {0, i, 2, tostring((need - tl) * 60 / tpm), tostring(rl), tostring(tl), 0} end
    end
  end
  if par >= 0 then
    local p = KEYS[2 + i * 2]
    if redis.call('ZCARD', p) >= par then
      redis.call('ZREMRANGEBYSCORE', p, '-inf', now - __TTL__)
      if redis.call('ZCARD', p) >= par then return {0, i, 3, '1', tostring(rl), tostring(tl), 0} end
    end
  end
  levels[i] = {rl, tl}
end
for j = n * 2 + 1, #KEYS do
  local v = redis.call('HMGET', KEYS[j], 'spent', 'reserved')
  local spent = tonumber(v[1]) or 0
  if spent + (tonumber(v[2]) or 0) >= tonumber(ARGV[4 + j + n]) then
    return {0, j - n * 2 - 1, 4, '0', '0', '0', spent}
  end
  levels[-j] = (v[1] == false and v[2] == false)
end
for i = 0, n - 1 do
  local rpm = tonumber(ARGV[5 + i * 3]); local tpm = tonumber(ARGV[6 + i * 3])
  local par = tonumber(ARGV[7 + i * 3])
  if rpm >= 0 or tpm >= 0 then
    local r, ts = 'x 0', 'x 0'
    if rpm >= 0 then r = string.format('%.17g %.17g', levels[i][1] - 1, now) end
    if tpm >= 0 then ts = string.format('%.17g %.17g', levels[i][2] - tokens, now) end
    redis.call('SET', KEYS[1 + i * 2], r .. ' ' .. ts, 'EX', 120)
  end
  if par >= 0 then
    redis.call('ZADD', KEYS[2 + i * 2], now, rid)
    redis.call('EXPIRE', KEYS[2 + i * 2], __TTL__)
  end
end
for j = n * 2 + 1, #KEYS do
  redis.call('HINCRBY', KEYS[j], 'reserved', ARGV[4])
  if levels[-j] then redis.call('EXPIRE', KEYS[j], __BUDGET_TTL__) end
end
if n == 0 then return {1, 0, 0, '0', '0', '0', 0} end
return {1, 0, 0, '0', tostring(levels[0][1] - 1), tostring(levels[0][2] - tokens), 0}
"""

# KEYS: per rate scope (buckets, parallel zset), then one book per budget.
# ARGV: token refund (estimated - actual, > 0 gives back), request_id, number of rate scopes,
# minus the reserved worst case, the real cost, then per rate scope tpm (-1 = unlimited).
# Returns each budget's spend after this request.
_SETTLE = """
local n = tonumber(ARGV[3])
local delta = tonumber(ARGV[1])
if n > 0 then
  local now = nil
  for i = 0, n - 1 do
    local tpm = tonumber(ARGV[6 + i])
    if tpm >= 0 and delta ~= 0 then
      if now == nil then
        local t = redis.call('TIME')
        now = tonumber(t[1]) + tonumber(t[2]) / 1e6
      end
      local k = KEYS[1 + i * 2]
      local v = redis.call('GET', k)
      local a, b, l, s = 'x', '0', nil, nil
      if v then
        local c, d
        a, b, c, d = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')
        l = tonumber(c); s = tonumber(d)
      end
      if l == nil then l = tpm; s = now end
      l = math.min(tpm, math.min(tpm, l + (now - s) * tpm / 60) + delta)
      redis.call('SET', k, a .. ' ' .. b .. ' ' .. string.format('%.17g %.17g', l, now), 'EX', 120)
    end
    redis.call('ZREM', KEYS[2 + i * 2], ARGV[2])
  end
end
local out = {}
for j = n * 2 + 1, #KEYS do
  redis.call('HINCRBY', KEYS[j], 'reserved', ARGV[4])
  out[#out + 1] = redis.call('HINCRBY', KEYS[j], 'spent', ARGV[5])
end
return out
"""

_SEED = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0
if tonumber(ARGV[1]) > spent then redis.call('HSET', KEYS[1], 'spent', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], __BUDGET_TTL__)
return 1
"""


def _lua(script: str) -> str:
    return script.replace("__TTL__", str(PARALLEL_TTL_S)).replace(
        "__BUDGET_TTL__", str(BUDGET_TTL_S)
    )


_WHAT = {1: "requests per minute", 2: "tokens per minute", 3: "concurrent requests"}


def _arg(v: int | None) -> int:
    return -1 if v is None else v


class RedisAdmission:
    def __init__(
        self,
        client: aioredis.Redis,
        guard: RedisGuard | None = None,
        now: Callable[[], dt.datetime] = utcnow,
        lean: bool = True,
    ) -> None:
        self.now = now
        self.guard = guard or RedisGuard()
        # While Redis is unreachable (budgets seeded like Redis).
        self.fallback = LocalAdmission(MemoryLimiter(), MemoryBudgets(now))
        self._admit = client.register_script(_lua(_ADMIT))
        self._settle = client.register_script(_lua(_SETTLE))
        self._seed = client.register_script(_lua(_SEED))
        # Our own pipelined connection for the scripts (redis_wire.py: ~4x less client CPU
        # per call than redis-py; `aclose` closes it); None for connections only redis-py
        # speaks (e.g. TLS), or without `lean`.
        self.wire = RedisWire.for_client(client) if lean else None

    async def _run(
        self,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[int | str],
        lazy: bool = False,
    ) -> Any:
        if self.wire is not None:
            text = cast(str, script.script)  # ours: always str
            return await self.wire.evalsha(script.sha, text, keys, args, lazy)
        return await script(keys=keys, args=args)

    async def aclose(self) -> None:
        if self.wire is not None:
            await self.wire.aclose()

    async def admit(
        self, scopes: Sequence[Scope], tokens: int, request_id: str, plan: BudgetPlan | None
    ) -> Admitted:
        if not scopes and (plan is None or not plan.scopes):
            return Admitted()
        if self.guard.usable():
            try:
                return await self._admit_shared(scopes, tokens, request_id, plan)
            except (RedisError, OSError) as e:
                self.guard.failed("admission", e)
        a = await self.fallback.admit(scopes, tokens, request_id, plan)
        if isinstance(a.budget, Reservation):
            a.budget.local = True
        return a

    async def _admit_shared(
        self, scopes: Sequence[Scope], tokens: int, request_id: str, plan: BudgetPlan | None
    ) -> Admitted:
        keys: list[str] = []
        args: list[int | str] = [tokens, request_id, len(scopes), plan.worst_micro if plan else 0]
        for s in scopes:
            name = RATE_PREFIX + s.name
            keys += [name + ":b", name + ":p"]
            args += [_arg(s.rpm), _arg(s.tpm), _arg(s.max_parallel)]
        named: list[tuple[BudgetScope, str]] = []
        now = self.now()
        if plan is not None:
            named = [(s, bucket_name(s, now)) for s in plan.scopes]
            keys += [BUDGET_PREFIX + b for _, b in named]
            args += [s.limit_micro for s, _ in named]
        ok, idx, why, wait, rl, tl, spent = await self._run(self._admit, keys, args)
        why = int(why)
        if why == 4:  # the rate limits had room, a budget had not
            refused = named[int(idx)][0]
            return Admitted(budget=Refusal(refused, int(spent), window_end(refused.window, now)))
        d = self._headers(scopes[int(idx)] if scopes else None, rl, tl)
        if not int(ok):
            scope = scopes[int(idx)]
            d.allowed = False
            d.retry_after_s = max(float(wait), 0.001)
            d.reason = f"{_WHAT[why]} limit of {scope.name}"
            return Admitted(d)
        return Admitted(d, Reservation(named, plan.worst_micro) if plan else None)

    @staticmethod
    def _headers(scope: Scope | None, rl: bytes | str, tl: bytes | str) -> Decision:
        if scope is None:
            return Decision(True)
        r_left, t_left = float(rl), float(tl)
        return Decision(
            True,
            headers=rate_headers(
                scope,
                r_left,
                t_left,
                (scope.rpm - r_left) * 60 / scope.rpm if scope.rpm else 0,
                (scope.tpm - t_left) * 60 / scope.tpm if scope.tpm else 0,
            ),
        )

    async def settle(
        self,
        scopes: Sequence[Scope],
        estimated: int,
        actual: int,
        request_id: str,
        reservation: Reservation | None,
        cost_micro: int,
    ) -> list[Crossing]:
        out: list[Crossing] = []
        if scopes:  # frees what a fallback admission took; a no-op otherwise
            await self.fallback.limiter.settle(scopes, estimated, actual, request_id)
        if reservation is not None and reservation.local:
            out = await self.fallback.budgets.settle(reservation, cost_micro)
            reservation = None
        if reservation is not None and (reservation.settled or not reservation.scopes):
            reservation = None
        if reservation is None and (not scopes or not self.guard.usable()):
            return out  # a reservation made in Redis is settled there even while the guard is open
        keys: list[str] = []
        args: list[int | str] = [estimated - actual, request_id, len(scopes)]
        args += [-reservation.worst_micro, cost_micro] if reservation else [0, 0]
        for s in scopes:
            keys += [f"{RATE_PREFIX}{s.name}:b", f"{RATE_PREFIX}{s.name}:p"]
            args.append(_arg(s.tpm))
        if reservation is not None:
            reservation.settled = True
            keys += [BUDGET_PREFIX + b for _, b in reservation.scopes]
        try:
            after = await self._run(self._settle, keys, args, lazy=True)  # shares a write
        except (RedisError, OSError) as e:
            self.guard.failed("settle", e)
            if reservation is not None:  # remember the spend locally; the ledger has it too
                book = self.fallback.budgets.spent
                for _, b in reservation.scopes:
                    book[b] = book.get(b, 0) + cost_micro
            return out
        if reservation is None:
            return out
        return [
            Crossing(s, b, int(a) - cost_micro, int(a))
            for (s, b), a in zip(reservation.scopes, after, strict=True)
        ]

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        await self.fallback.seed(scope, spent_micro)
        if self.guard.usable():
            key = BUDGET_PREFIX + bucket_name(scope, self.now())
            try:
                await self._run(self._seed, [key], [spent_micro])
            except (RedisError, OSError) as e:
                self.guard.failed("budget seeding", e)

    def prune(self) -> None:
        self.fallback.prune()
