"""USD budgets per key/team/org: reserve the worst case before the call, settle after.

Admission rule (the hard stop at 100%): a request is admitted while `spent + reserved` is
below the budget, and then reserves its worst case. Every admitted request's reservation
is counted before the next decision, so a concurrent burst overruns a budget by at most one
request's worst case. Windows (daily/weekly/monthly, UTC) are part of the bucket name, so a
new window starts at zero without any reset job. `RedisAdmission` (redis_admission.py) keeps
the same book in Redis, shared across replicas, and reserves in the same script call as the
rate limits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from slipstream.store.records import MICRO, utcnow, window_start


@dataclass(frozen=True)
class BudgetScope:
    name: str  # "key:<id>", "team:<id>", "org:<id>"
    limit_micro: int
    window: str | None = None


@dataclass(slots=True)
class BudgetPlan:
    scopes: list[BudgetScope]
    worst_micro: int


@dataclass(slots=True)
class Reservation:
    scopes: Sequence[tuple[BudgetScope, str]]  # (scope, book name incl. the window start)
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


@dataclass(slots=True)
class Crossing:
    """A settle that moved a scope's spend to `spent_micro` (for threshold alerts)."""

    scope: BudgetScope
    bucket: str
    before_micro: int
    spent_micro: int


def bucket_name(scope: BudgetScope, now: dt.datetime) -> str:
    return f"{scope.name}:{window_start(scope.window, now).isoformat()}"


class BucketNames:
    """`bucket_name` for lists of scopes, worked out once per UTC day (a window can only turn
    at midnight). Lists are kept by identity (the limits stage shares one list per key), with
    the list itself held so its id cannot be reused while cached."""

    MAX = 4096

    def __init__(self) -> None:
        self._day_start = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._day_end = self._day_start
        self._cache: dict[int, tuple[Sequence[BudgetScope], list[tuple[BudgetScope, str]]]] = {}

    def of(self, scopes: Sequence[BudgetScope], now: dt.datetime) -> list[tuple[BudgetScope, str]]:
        """(scope, book name) pairs; the returned list is shared: never change it."""
        if not self._day_start <= now < self._day_end:
            start = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
            self._day_start, self._day_end = start, start + dt.timedelta(days=1)
            self._cache.clear()
        hit = self._cache.get(id(scopes))
        if hit is not None and hit[0] is scopes:
            return hit[1]
        if len(self._cache) >= self.MAX:
            self._cache.clear()
        named = [(s, bucket_name(s, now)) for s in scopes]
        self._cache[id(scopes)] = (scopes, named)
        return named


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
    names: BucketNames = field(default_factory=BucketNames, repr=False)
    report_crossings: bool = True  # False: no budget alerts are configured to read them

    async def reserve(self, scopes: Sequence[BudgetScope], worst: int) -> Reservation | Refusal:
        return self.take(scopes, worst)

    def take(self, scopes: Sequence[BudgetScope], worst: int) -> Reservation | Refusal:
        """`reserve` without the coroutine (LocalAdmission calls it on every request)."""
        now = self.now()
        named = self.names.of(scopes, now)
        for s, b in named:
            spent = self.spent.get(b, 0)
            if spent + self.reserved.get(b, 0) >= s.limit_micro:
                return Refusal(s, spent, window_end(s.window, now))
        for _, b in named:
            self.reserved[b] = self.reserved.get(b, 0) + worst
        return Reservation(named, worst)

    async def settle(self, r: Reservation, actual: int) -> list[Crossing]:
        return self.close(r, actual)

    def close(self, r: Reservation, actual: int) -> list[Crossing]:
        """`settle` without the coroutine."""
        if r.settled:
            return []
        r.settled = True
        out = []
        reserved, spent, report = self.reserved, self.spent, self.report_crossings
        for s, b in r.scopes:
            reserved[b] = max(0, reserved.get(b, 0) - r.worst_micro)
            before = spent.get(b, 0)
            spent[b] = before + actual
            if report:
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
