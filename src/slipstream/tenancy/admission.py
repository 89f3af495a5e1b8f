"""Admission: a request's rate limits and its budget reservation, decided together.

All or nothing: a request is admitted only if every rate-limit bucket it belongs to has room
*and* its worst-case cost fits every budget; a request refused by either takes nothing from
any bucket or book. Rate limits are checked first, so a request over both is told about the
rate limit. `settle` gives back what the answer did not use: the token estimate is corrected
with the real usage, the concurrency slot is released, and the budget reservation is replaced
by the real cost.

Rate limits: requests/min and tokens/min token buckets, plus a concurrent-request cap, per
`Scope` (a key, its team, a model). Tokens are estimated on entry and corrected on settle
(a bucket may go into debt). Budgets (USD per key/team/org, `BudgetScope`): a request is
admitted while `spent + reserved` is below the budget, and then reserves its worst case;
every admitted request's reservation is counted before the next decision, so a concurrent
burst overruns a budget by at most one request's worst case. Windows are part of a book's
name (books.py), so a new window starts at zero without any reset job.

Two implementations of `Admission`, run against the same tests:
- `local.LocalAdmission` keeps the books in this process (one replica);
- `shared.RedisAdmission` shares them between replicas through Redis: capacity is leased in
  chunks by one script call and spent locally while it lasts, and settlements go back in
  batched pushes.

This module holds what both speak: the protocol and its value types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from slipstream.store.records import MICRO

WINDOW_S = 60.0  # the rate limits' window: requests and tokens per minute


@dataclass(frozen=True)
class Scope:
    """One rate-limited subject (e.g. "key:key_ab12") and its limits (None: unlimited)."""

    name: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


@dataclass(slots=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    reason: str = ""  # which limit refused, for the 429 message
    headers: dict[str, str] = field(default_factory=dict)


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

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        """Raise a budget's spend in this window to what the ledger says (never lower it)."""
        ...

    def prune(self) -> None:
        """Forget books of windows that ended."""
        ...

    async def aclose(self) -> None: ...


def rate_headers(
    scope: Scope, req_left: float, tok_left: float, resets: bool = True
) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for the scope that matters most (the key): limit and
    remaining, and with `resets` the time until the bucket is full again.

    `resets=False` (answered requests) leaves out the two `reset-*` headers, as LiteLLM's
    proxy does: they matter once a limit is hit, where a 429 carries them with Retry-After,
    and every response header costs the server ~1.5 µs of CPU (measured: the six of them
    were a quarter of what keys, limits and spend cost per request).
    """
    h: dict[str, str] = {}
    if (rpm := scope.rpm) is not None:
        h["x-ratelimit-limit-requests"] = str(rpm)
        h["x-ratelimit-remaining-requests"] = str(int(req_left)) if req_left > 0 else "0"
        if resets:
            wait = (rpm - req_left) * WINDOW_S / rpm if rpm else 0.0
            h["x-ratelimit-reset-requests"] = f"{max(wait, 0.0):.3f}s"
    if (tpm := scope.tpm) is not None:
        h["x-ratelimit-limit-tokens"] = str(tpm)
        h["x-ratelimit-remaining-tokens"] = str(int(tok_left)) if tok_left > 0 else "0"
        if resets:
            wait = (tpm - tok_left) * WINDOW_S / tpm if tpm else 0.0
            h["x-ratelimit-reset-tokens"] = f"{max(wait, 0.0):.3f}s"
    return h
