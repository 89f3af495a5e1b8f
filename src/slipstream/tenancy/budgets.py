"""USD budgets per key/team/org: reserve the worst case before the call, settle after.

Admission rule (the hard stop at 100%): a request is admitted while `spent + reserved` is
below the budget, and then reserves its worst case. Every admitted request's reservation
is counted before the next decision, so a concurrent burst overruns a budget by at most one
request's worst case. Windows (daily/weekly/monthly, UTC) are part of the bucket name, so a
new window starts at zero without any reset job. `RedisBudgets` shares the same book across
replicas with Lua scripts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from slipstream.store.records import MICRO, utcnow, window_start
from slipstream.tenancy.redis_guard import RedisGuard

PREFIX = "slipstream:budget:"


@dataclass(frozen=True)
class BudgetScope:
    name: str  # "key:<id>", "team:<id>", "org:<id>"
    limit_micro: int
    window: str | None = None


@dataclass(frozen=True)
class BudgetPlan:
    scopes: list[BudgetScope]
    worst_micro: int


@dataclass
class Reservation:
    scopes: list[tuple[BudgetScope, str]]  # (scope, bucket name incl. the window start)
    worst_micro: int
    settled: bool = False
    local: bool = False  # made in the in-memory fallback book (Redis was down)


@dataclass
class Refusal:
    scope: BudgetScope
    spent_micro: int
    reset_at: dt.datetime

    def message(self) -> str:
        return (
            f"Budget exceeded for {self.scope.name}: spent ${self.spent_micro / MICRO:.6f} of "
            f"${self.scope.limit_micro / MICRO:.6f} ({self.scope.window or 'daily'} window, "
            f"resets {self.reset_at.isoformat()})"
        )


@dataclass
class Crossing:
    """A settle that moved a scope's spend to `spent_micro` (for threshold alerts)."""

    scope: BudgetScope
    bucket: str
    before_micro: int
    spent_micro: int


def bucket_name(scope: BudgetScope, now: dt.datetime) -> str:
    return f"{scope.name}:{window_start(scope.window, now).isoformat()}"


def window_end(window: str | None, now: dt.datetime) -> dt.datetime:
    start = window_start(window, now)
    if window == "weekly":
        end = start + dt.timedelta(days=7)
    elif window == "monthly":
        end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    else:
        end = start + dt.timedelta(days=1)
    return dt.datetime.combine(end, dt.time(), dt.UTC)


class Budgets(Protocol):
    async def reserve(self, scopes: Sequence[BudgetScope], worst: int) -> Reservation | Refusal: ...

    async def settle(self, r: Reservation, actual: int) -> list[Crossing]: ...

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None: ...


@dataclass
class MemoryBudgets:
    """One replica's book. `seed` raises spend to what the ledger says (never lowers it)."""

    now: Callable[[], dt.datetime] = utcnow
    spent: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)

    async def reserve(self, scopes: Sequence[BudgetScope], worst: int) -> Reservation | Refusal:
        now = self.now()
        named = [(s, bucket_name(s, now)) for s in scopes]
        for s, b in named:
            spent = self.spent.get(b, 0)
            if spent + self.reserved.get(b, 0) >= s.limit_micro:
                return Refusal(s, spent, window_end(s.window, now))
        for _, b in named:
            self.reserved[b] = self.reserved.get(b, 0) + worst
        return Reservation(named, worst)

    async def settle(self, r: Reservation, actual: int) -> list[Crossing]:
        if r.settled:
            return []
        r.settled = True
        out = []
        for s, b in r.scopes:
            self.reserved[b] = max(0, self.reserved.get(b, 0) - r.worst_micro)
            before = self.spent.get(b, 0)
            self.spent[b] = before + actual
            out.append(Crossing(s, b, before, before + actual))
        return out

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        b = bucket_name(scope, self.now())
        self.spent[b] = max(self.spent.get(b, 0), spent_micro)

    def prune(self) -> None:
        """Forget books of windows that ended (names end in their start day)."""
        oldest = (self.now() - dt.timedelta(days=32)).date().isoformat()
        for book in (self.spent, self.reserved):
            for b in [b for b in book if b.rsplit(":", 1)[-1] < oldest]:
                del book[b]


_RESERVE = """
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
  local spent = tonumber(v[1]) or 0
  if spent + (tonumber(v[2]) or 0) >= tonumber(ARGV[1 + i]) then return {i, spent} end
end
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'reserved', ARGV[1])
  redis.call('EXPIRE', KEYS[i], 3024000)
end
return {0, 0}
"""
_SETTLE = """
local out = {}
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'reserved', -tonumber(ARGV[1]))
  out[i] = redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2])
end
return out
"""
_SEED = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent')) or 0
if tonumber(ARGV[1]) > spent then redis.call('HSET', KEYS[1], 'spent', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], 3024000)
return 1
"""


class RedisBudgets:
    """The book in Redis hashes {spent, reserved}, one per scope and window (35-day TTL)."""

    def __init__(
        self,
        client: aioredis.Redis,
        now: Callable[[], dt.datetime] = utcnow,
        guard: RedisGuard | None = None,
    ) -> None:
        self.now = now
        self.guard = guard or RedisGuard()
        self.fallback = MemoryBudgets(now)  # while Redis is unreachable (seeded like Redis)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._seed = client.register_script(_SEED)

    async def reserve(self, scopes: Sequence[BudgetScope], worst: int) -> Reservation | Refusal:
        if self.guard.usable():
            try:
                return await self._reserve_shared(scopes, worst)
            except (RedisError, OSError) as e:
                self.guard.failed("budget check", e)
        r = await self.fallback.reserve(scopes, worst)
        if isinstance(r, Reservation):
            r.local = True
        return r

    async def _reserve_shared(
        self, scopes: Sequence[BudgetScope], worst: int
    ) -> Reservation | Refusal:
        now = self.now()
        named = [(s, bucket_name(s, now)) for s in scopes]
        if not named:
            return Reservation([], worst)
        keys = [PREFIX + b for _, b in named]
        refused, spent = await self._reserve(
            keys=keys, args=[worst, *(s.limit_micro for s, _ in named)]
        )
        if int(refused):
            s = named[int(refused) - 1][0]
            return Refusal(s, int(spent), window_end(s.window, now))
        return Reservation(named, worst)

    async def settle(self, r: Reservation, actual: int) -> list[Crossing]:
        if r.local:
            return await self.fallback.settle(r, actual)
        if r.settled or not r.scopes:
            return []
        r.settled = True
        try:
            after = await self._settle(
                keys=[PREFIX + b for _, b in r.scopes], args=[r.worst_micro, actual]
            )
        except (RedisError, OSError) as e:
            self.guard.failed("budget settle", e)
            for _, b in r.scopes:  # remember the spend locally; the ledger has it too
                self.fallback.spent[b] = self.fallback.spent.get(b, 0) + actual
            return []
        return [
            Crossing(s, b, int(a) - actual, int(a))
            for (s, b), a in zip(r.scopes, after, strict=True)
        ]

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        await self.fallback.seed(scope, spent_micro)
        if self.guard.usable():
            try:
                await self._seed(keys=[PREFIX + bucket_name(scope, self.now())], args=[spent_micro])
            except (RedisError, OSError) as e:
                self.guard.failed("budget seeding", e)
