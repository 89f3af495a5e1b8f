"""Budgets: what a request reserves before the call (the limits stage admits it against its
rate limits and these budgets in one step, and settles the real cost after).

Worst case = prompt estimate at the input price + max_tokens (or the configured default) at
the output price of the most expensive deployment of the model. Streams are included: their
reservation is settled when the stream ends, whether finished or cancelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream.gateway.context import RequestContext
from slipstream.tenancy.budgets import BudgetPlan, BudgetScope
from slipstream.tenancy.request import TenantRequest

if TYPE_CHECKING:
    from slipstream.tenancy.runtime import Tenancy


def budget_scopes(t: TenantRequest) -> list[BudgetScope]:
    out = []
    for kind, rec in (("key", t.key), ("team", t.team)):
        if rec is not None and rec.limits.budget_micro is not None:
            out.append(
                BudgetScope(f"{kind}:{rec.id}", rec.limits.budget_micro, rec.limits.budget_window)
            )
    if t.org is not None and t.org.budget_micro is not None:
        out.append(BudgetScope(f"org:{t.org.id}", t.org.budget_micro, t.org.budget_window))
    return out


def budget_plan(
    tenancy: Tenancy, ctx: RequestContext, t: TenantRequest, scopes: list[BudgetScope] | None = None
) -> BudgetPlan | None:
    """What to reserve: the scopes with a budget (`scopes`: already worked out by the caller)
    and the request's worst-case cost."""
    if ctx.group is None:
        return None
    if scopes is None:
        scopes = budget_scopes(t)
    if not scopes:
        return None
    max_out = t.max_tokens or tenancy.config.default_max_tokens
    prices = tenancy.prices
    worst = max(
        prices.for_deployment(d.config).worst_case_micro(t.prompt_estimate, max_out)
        for d in ctx.group.deployments
    )
    return BudgetPlan(scopes, worst)
