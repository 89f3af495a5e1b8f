"""`LocalAdmission`: one replica's rate limits and budgets, in this process (see
tenancy/admission.py for the contract). The default without Redis, and `RedisAdmission`'s
fallback while Redis is unreachable."""

from __future__ import annotations

from collections.abc import Sequence

from slipstream.tenancy.admission import (
    Admitted,
    BudgetPlan,
    BudgetScope,
    Crossing,
    Decision,
    Refusal,
    Reservation,
    Scope,
)
from slipstream.tenancy.local.budgets import MemoryBudgets
from slipstream.tenancy.local.ratelimit import MemoryLimiter


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
        self.budgets.seed(scope, spent_micro)

    def prune(self) -> None:
        self.budgets.prune()

    async def aclose(self) -> None:
        return None
