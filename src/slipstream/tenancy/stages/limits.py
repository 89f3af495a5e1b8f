"""Limits and budgets: admit the request against the rate limits of its key, team and model
and reserve its worst-case cost in the budgets of its key, team and org — all or nothing, in
one step (with Redis: one script call). Settled in `post`: tokens/min takes the entry estimate
(prompt chars/4 + max_tokens) and is corrected with the real usage, the concurrency slot is
given back, and the budget reservation is replaced by the real cost (priced by the spend
stage, whose `post` runs before this one).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from slipstream.gateway.context import RequestContext
from slipstream.gateway.stage import Phase
from slipstream.store.records import Limits
from slipstream.tenancy.admission import BudgetPlan, BudgetScope, Scope
from slipstream.tenancy.admission import Refusal as BudgetRefusal
from slipstream.tenancy.prices import Price, PriceTable
from slipstream.tenancy.refusals import too_many
from slipstream.tenancy.request import TENANT, TenantRequest

if TYPE_CHECKING:
    from slipstream.tenancy.runtime import Tenancy


def _scope(name: str, lim: Limits) -> Scope | None:
    if lim.rpm is None and lim.tpm is None and lim.max_parallel is None:
        return None
    return Scope(name, lim.rpm, lim.tpm, lim.max_parallel)


def scopes_of(t: TenantRequest, ctx: RequestContext) -> list[Scope]:
    """The key's, its team's and the model's limits (the key first: its headers are shown)."""
    out = []
    if t.key is not None and (s := _scope(f"key:{t.key.id}", t.key.limits)):
        out.append(s)
    if t.team is not None and (s := _scope(f"team:{t.team.id}", t.team.limits)):
        out.append(s)
    group = ctx.group
    if group is not None and (ml := group.config.limits) is not None:
        out.append(Scope(f"model:{group.name}", ml.rpm, ml.tpm, ml.max_parallel))
    return out


def budget_scopes(t: TenantRequest) -> list[BudgetScope]:
    """The budgets a request reserves its worst case in: its key's, team's and org's."""
    out = []
    for kind, rec in (("key", t.key), ("team", t.team)):
        if rec is not None and rec.limits.budget_micro is not None:
            out.append(
                BudgetScope(f"{kind}:{rec.id}", rec.limits.budget_micro, rec.limits.budget_window)
            )
    if t.org is not None and t.org.budget_micro is not None:
        out.append(BudgetScope(f"org:{t.org.id}", t.org.budget_micro, t.org.budget_window))
    return out


MAX_PLANS = 4096


class ScopePlan:
    """What admission needs for one (key, team, org, model group): rate scopes, budget scopes
    and the group's deployment prices (the budget's worst case is the dearest of them)."""

    __slots__ = ("budgets", "prices", "rate")

    def __init__(self, rate: list[Scope], budgets: list[BudgetScope], prices: list[Price]) -> None:
        self.rate, self.budgets, self.prices = rate, budgets, prices

    def worst_micro(self, prompt_tokens: int, max_tokens: int) -> int:
        if len(self.prices) == 1:
            return self.prices[0].worst_case_micro(prompt_tokens, max_tokens)
        return max(p.worst_case_micro(prompt_tokens, max_tokens) for p in self.prices)


PlanKey = tuple[str | None, str | None, str | None, str | None, int, int]


class ScopePlans:
    """The plans of (key, team, org, model group), worked out once.

    They are the same for every request of a key until a key-cache refresh or a config reload
    replaces one of those records, so they are kept by the records' ids plus the version of
    the key cache snapshot and the generation of the gateway config they came from. The lists
    are shared by every request of the key: read them, never change them.
    """

    def __init__(self, prices: PriceTable) -> None:
        self._prices = prices
        self._plans: dict[PlanKey, ScopePlan] = {}

    def get(self, t: TenantRequest, ctx: RequestContext) -> ScopePlan:
        group = ctx.group
        k, tm, o = t.key, t.team, t.org
        key: PlanKey = (
            k.id if k is not None else None,
            tm.id if tm is not None else None,
            o.id if o is not None else None,
            group.name if group is not None else None,
            t.records_version,
            ctx.state.generation,
        )
        hit = self._plans.get(key)
        if hit is not None:
            return hit
        if len(self._plans) >= MAX_PLANS:  # refreshes and reloads left old entries: start over
            self._plans.clear()
        prices = [self._prices.for_deployment(d.config) for d in group.deployments] if group else []
        plan = ScopePlan(scopes_of(t, ctx), budget_scopes(t) if group else [], prices)
        self._plans[key] = plan
        return plan


class LimitsStage:
    name = "limits"
    phase = Phase.ADMIT

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy
        self.plans = ScopePlans(tenancy.prices)

    async def pre(self, ctx: RequestContext) -> None:
        t = ctx.get(TENANT)
        if t is None:
            return
        p = self.plans.get(t, ctx)
        scopes = p.rate
        plan = None
        if p.budgets and p.prices:
            max_out = t.max_tokens or self.tenancy.config.default_max_tokens
            plan = BudgetPlan(p.budgets, p.worst_micro(t.prompt_estimate, max_out))
        elif not scopes:
            return
        tokens = t.prompt_estimate + (t.max_tokens or 0)
        a = await self.tenancy.admission.admit(scopes, tokens, ctx.request_id, plan)
        d = a.limits
        if d.headers:
            ctx.response_headers.update(d.headers)
        if not d.allowed:
            raise too_many(
                f"Rate limit reached: {d.reason}. Retry after {d.retry_after_s:.2f}s.",
                d.retry_after_s,
                {**d.headers, "retry-after": str(max(1, round(d.retry_after_s + 0.499)))},
                "rate_limit_exceeded",
            )
        if isinstance(a.budget, BudgetRefusal):
            r = a.budget
            wait = max(1.0, (r.reset_at - dt.datetime.now(dt.UTC)).total_seconds())
            raise too_many(
                r.message(), wait, {"retry-after": str(math.ceil(wait))}, "budget_exceeded"
            )
        t.limit_scopes = scopes
        t.limit_tokens = tokens
        t.reservation = a.budget

    async def post(self, ctx: RequestContext) -> None:
        t = ctx.get(TENANT)
        if t is None or (not t.limit_scopes and t.reservation is None):
            return
        actual = ctx.usage.total_tokens if ctx.usage is not None else t.limit_tokens
        await self.tenancy.settle(self._settle(t, actual, ctx.request_id))

    async def _settle(self, t: TenantRequest, actual: int, request_id: str) -> None:
        crossings = await self.tenancy.admission.settle(
            t.limit_scopes, t.limit_tokens, actual, request_id, t.reservation, t.cost_micro or 0
        )
        if crossings:
            self.tenancy.alerts.check(crossings)
