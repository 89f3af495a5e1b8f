"""Helpers of the lease tests (test_leases.py, test_lease_push.py): running without I/O,
scopes far from their limits, and reading the shared buckets and books back from Redis."""

from __future__ import annotations

from typing import Any

import redis as sync_redis

from slipstream.tenancy.admission import Admitted, BudgetPlan, BudgetScope, Reservation, Scope
from slipstream.tenancy.shared.scripts import BUDGET_PREFIX, RATE_PREFIX

BIG = 10**9


def at_once(coro: Any) -> Any:
    """Run a coroutine that must finish without waiting on anything (no I/O)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("it waited on something (a Redis call)")


def reserved(a: Admitted) -> Reservation:
    assert isinstance(a.budget, Reservation)
    return a.budget


def big_scopes(ns: str) -> tuple[list[Scope], BudgetPlan]:
    scopes = [Scope(f"key:{ns}", BIG, BIG, BIG), Scope(f"team:{ns}", BIG, BIG, BIG)]
    plan = BudgetPlan([BudgetScope(f"key:{ns}", BIG, "daily")], 10)
    return scopes, plan


def level(r: sync_redis.Redis, scope: str) -> tuple[float, float]:
    """The levels of a scope's requests/min and tokens/min buckets (inf: not tracked)."""
    a, _, c, _ = r.get(f"{RATE_PREFIX}{scope}:b").decode().split()  # type: ignore[union-attr]
    return tuple(float("inf") if v == "x" else float(v) for v in (a, c))  # type: ignore[return-value]


def book(r: sync_redis.Redis, scope: str) -> dict[bytes, bytes]:
    (key,) = list(r.scan_iter(f"{BUDGET_PREFIX}{scope}:*"))
    return r.hgetall(key)  # type: ignore[return-value]
