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
from slipstream.gateway.stages.budget import budget_plan, budget_scopes
from slipstream.store.records import Limits
from slipstream.tenancy.budgets import BudgetScope, Refusal
from slipstream.tenancy.errors import too_many
from slipstream.tenancy.ratelimit import Scope
from slipstream.tenancy.request import EXTRA, TenantRequest

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


MAX_PLANS = 4096


class ScopePlans:
    """The rate scopes and budget scopes of (key, team, org, model group), worked out once.

    They are the same for every request of a key until a refresh or a reload replaces one of
    those records (all frozen: a change makes a new object), so they are kept by the records'
    identity; each entry holds the records themselves, so an id is never reused while cached.
    The lists are shared by every request of the key: read them, never change them.
    """

    def __init__(self) -> None:
        self._plans: dict[
            tuple[int, ...], tuple[tuple[object, ...], list[Scope], list[BudgetScope]]
        ]
        self._plans = {}

    def get(self, t: TenantRequest, ctx: RequestContext) -> tuple[list[Scope], list[BudgetScope]]:
        owners = (t.key, t.team, t.org, ctx.group)
        ident = tuple(map(id, owners))
        hit = self._plans.get(ident)
        if hit is not None and all(a is b for a, b in zip(hit[0], owners, strict=True)):
            return hit[1], hit[2]
        if len(self._plans) >= MAX_PLANS:  # refreshed records left old entries: start over
            self._plans.clear()
        rate, budget = scopes_of(t, ctx), budget_scopes(t)
        self._plans[ident] = (owners, rate, budget)
        return rate, budget


class LimitsStage:
    name = "limits"

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy
        self.plans = ScopePlans()

    async def pre(self, ctx: RequestContext) -> None:
        t = ctx.extra.get(EXTRA)
        if not isinstance(t, TenantRequest):
            return
        scopes, budgets = self.plans.get(t, ctx)
        plan = budget_plan(self.tenancy, ctx, t, budgets)
        if not scopes and plan is None:
            return
        tokens = t.prompt_estimate + (t.max_tokens or 0)
        a = await self.tenancy.admission.admit(scopes, tokens, ctx.request_id, plan)
        d = a.limits
        t.response_headers.update(d.headers)
        if not d.allowed:
            raise too_many(
                f"Rate limit reached: {d.reason}. Retry after {d.retry_after_s:.2f}s.",
                d.retry_after_s,
                {**d.headers, "retry-after": str(max(1, round(d.retry_after_s + 0.499)))},
                "rate_limit_exceeded",
            )
        if isinstance(a.budget, Refusal):
            r = a.budget
            wait = max(1.0, (r.reset_at - dt.datetime.now(dt.UTC)).total_seconds())
            raise too_many(
                r.message(), wait, {"retry-after": str(math.ceil(wait))}, "budget_exceeded"
            )
        t.limit_scopes = scopes
        t.limit_tokens = tokens
        t.reservation = a.budget

    async def post(self, ctx: RequestContext) -> None:
        t = ctx.extra.get(EXTRA)
        if not isinstance(t, TenantRequest) or (not t.limit_scopes and t.reservation is None):
            return
        actual = ctx.usage.total_tokens if ctx.usage is not None else t.limit_tokens
        await self.tenancy.settle(self._settle(t, actual, ctx.request_id))

    async def _settle(self, t: TenantRequest, actual: int, request_id: str) -> None:
        crossings = await self.tenancy.admission.settle(
            t.limit_scopes, t.limit_tokens, actual, request_id, t.reservation, t.cost_micro or 0
        )
        self.tenancy.alerts.check(crossings)
