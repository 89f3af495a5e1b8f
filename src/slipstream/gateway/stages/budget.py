"""Budgets: what a request reserves before the call (the limits stage admits it against its
rate limits and these budgets in one step, and settles the real cost after).

Worst case = prompt estimate at the input price + max_tokens (or the configured default) at
the output price of the most expensive deployment of the model. Streams are included: their
reservation is settled when the stream ends, whether finished or cancelled.
"""

from __future__ import annotations

from slipstream.tenancy.admission import BudgetScope
from slipstream.tenancy.request import TenantRequest


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
