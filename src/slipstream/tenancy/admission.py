"""Admission: a request's rate limits and its budget reservation, decided together.

All or nothing: a request is admitted only if every rate-limit bucket it belongs to has room
*and* its worst-case cost fits every budget; a request refused by either takes nothing from
any bucket or book. Rate limits are checked first, so a request over both is told about the
rate limit. `settle` gives back what the answer did not use: the token estimate is corrected
with the real usage, the concurrency slot is released, and the budget reservation is replaced
by the real cost.

`LocalAdmission` keeps the books in this process; `RedisAdmission` (redis_admission.py)
shares them between replicas: capacity is leased from Redis in chunks by one script call and
spent locally while it lasts, and settlements go back in batched pushes (leases.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from slipstream.tenancy.budgets import (
    BudgetPlan,
    BudgetScope,
    Crossing,
    MemoryBudgets,
    Refusal,
    Reservation,
)
from slipstream.tenancy.ratelimit import Decision, MemoryLimiter, Scope


@dataclass(slots=True)
class Admitted:
    """What admission decided: `limits` refused (nothing taken), or the budget refused
    (`budget` is a Refusal; nothing taken either), or both passed (`budget` is the
    Reservation to settle, None without a budget)."""

    limits: Decision = field(default_factory=lambda: Decision(True))
    budget: Reservation | Refusal | None = None


class Admission(Protocol):
    async def admit(
        self, scopes: Sequence[Scope], tokens: int, request_id: str, plan: BudgetPlan | None
    ) -> Admitted: ...

    async def settle(
        self,
        scopes: Sequence[Scope],
        estimated: int,
        actual: int,
        request_id: str,
        reservation: Reservation | None,
        cost_micro: int,
    ) -> list[Crossing]: ...

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None: ...

    def prune(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalAdmission:
    """One replica's books (asyncio: nothing below awaits, so each call runs uninterrupted)."""

    def __init__(
        self, limiter: MemoryLimiter | None = None, budgets: MemoryBudgets | None = None
    ) -> None:
        self.limiter = limiter or MemoryLimiter()
        self.budgets = budgets or MemoryBudgets()

    async def admit(
        self, scopes: Sequence[Scope], tokens: int, request_id: str, plan: BudgetPlan | None
    ) -> Admitted:
        d = self.limiter.take(scopes, tokens) if scopes else Decision(True)
        if not d.allowed or plan is None:
            return Admitted(d)
        r = self.budgets.take(plan.scopes, plan.worst_micro)
        if isinstance(r, Refusal) and scopes:
            # Same instant as the take (no await in between): an exact give-back.
            self.limiter.undo(scopes, tokens)
        return Admitted(d, r)

    async def settle(
        self,
        scopes: Sequence[Scope],
        estimated: int,
        actual: int,
        request_id: str,
        reservation: Reservation | None,
        cost_micro: int,
    ) -> list[Crossing]:
        if scopes:
            self.limiter.give_back(scopes, estimated, actual)
        if reservation is None:
            return []
        return self.budgets.close(reservation, cost_micro)

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        await self.budgets.seed(scope, spent_micro)

    def prune(self) -> None:
        self.budgets.prune()

    async def aclose(self) -> None:
        return None
