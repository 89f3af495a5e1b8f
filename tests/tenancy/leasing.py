"""Helpers of the lease tests (test_leases.py, test_lease_push.py): counting script calls,
scopes far from their limits, and reading the shared buckets and books back from Redis."""

from __future__ import annotations

from typing import Any

import redis as sync_redis

from slipstream.tenancy.admission import Admitted, BudgetPlan, BudgetScope, Reservation, Scope
from slipstream.tenancy.shared.admission import RedisAdmission
from slipstream.tenancy.shared.scripts import BUDGET_PREFIX, RATE_PREFIX

BIG = 10**9


class Calls:
    """Counts the script calls of one RedisAdmission: admissions (take 1), lease top-ups
    (take 0) and pushes."""

    def __init__(self, adm: RedisAdmission) -> None:
        assert adm.wire is not None
        wire = adm.wire
        self.admits = self.top_ups = self.pushes = 0
        evalsha, submit = wire.evalsha, wire.submit
        admit_sha = adm._admit.sha

        async def counted(sha: str, script: str, keys: Any, args: Any, lazy: bool = False) -> Any:
            if sha == admit_sha:
                if args[4] == 1:
                    self.admits += 1
                else:
                    self.top_ups += 1
            else:
                self.pushes += 1
            return await evalsha(sha, script, keys, args, lazy)

        def submitted(sha: str, keys: Any, args: Any) -> Any:
            self.pushes += 1
            return submit(sha, keys, args)

        wire.evalsha = counted  # type: ignore[method-assign]
        wire.submit = submitted  # type: ignore[method-assign]

    @property
    def total(self) -> int:
        return self.admits + self.top_ups + self.pushes


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
