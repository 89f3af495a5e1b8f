"""Rate limits: requests/min and tokens/min token buckets, plus a concurrent-request cap.

A request asks every scope it belongs to (its key, its team) at once, and is admitted only if
all have room: nothing is consumed from any scope on a refusal. Tokens are estimated on entry
and corrected by `settle` once the real usage is known (the bucket may go into debt).
`MemoryLimiter` serves one replica; `RedisAdmission` (redis_admission.py) does the same
check-and-take, together with the budget reservation, in one Lua script so several replicas
share one limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_S = 60.0


@dataclass(frozen=True)
class Scope:
    """One limited subject (e.g. "key:key_ab12") and its limits (None: unlimited)."""

    name: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


@dataclass
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    reason: str = ""  # which limit refused, for the 429 message
    headers: dict[str, str] = field(default_factory=dict)


class Limiter(Protocol):
    async def acquire(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision: ...

    async def settle(
        self, scopes: Sequence[Scope], estimated: int, actual: int, request_id: str
    ) -> None: ...


def rate_headers(
    scope: Scope, req_left: float, tok_left: float, req_reset_s: float, tok_reset_s: float
) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for the scope that matters most (the key)."""
    h: dict[str, str] = {}
    if scope.rpm is not None:
        h["x-ratelimit-limit-requests"] = str(scope.rpm)
        h["x-ratelimit-remaining-requests"] = str(max(0, math.floor(req_left)))
        h["x-ratelimit-reset-requests"] = f"{max(0.0, req_reset_s):.3f}s"
    if scope.tpm is not None:
        h["x-ratelimit-limit-tokens"] = str(scope.tpm)
        h["x-ratelimit-remaining-tokens"] = str(max(0, math.floor(tok_left)))
        h["x-ratelimit-reset-tokens"] = f"{max(0.0, tok_reset_s):.3f}s"
    return h


@dataclass
class TokenBucket:
    """`capacity` per minute, refilled continuously; `level` may go negative (usage debt)."""

    capacity: float
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        rate = self.capacity / WINDOW_S
        self.level = min(self.capacity, self.level + (now - self.stamp) * rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 if it is now)."""
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing / (self.capacity / WINDOW_S)

    def reset_s(self) -> float:
        return (self.capacity - self.level) / (self.capacity / WINDOW_S)


class MemoryLimiter:
    """In-process limits for one replica (asyncio: each call runs without interleaving)."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._parallel: dict[str, int] = {}

    def _bucket(self, scope: str, kind: str, capacity: int, now: float) -> TokenBucket:
        b = self._buckets.get((scope, kind))
        if b is None or b.capacity != capacity:
            b = TokenBucket(float(capacity), float(capacity), now)
            self._buckets[(scope, kind)] = b
        b.refill(now)
        return b

    async def acquire(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        now = self._now()
        plan: list[tuple[TokenBucket | None, TokenBucket | None, Scope]] = []
        for s in scopes:
            rb = self._bucket(s.name, "r", s.rpm, now) if s.rpm is not None else None
            tb = self._bucket(s.name, "t", s.tpm, now) if s.tpm is not None else None
            if rb is not None and rb.level < 1:
                return self._refuse(s, "requests per minute", rb.wait_for(1), rb, tb)
            need = min(tokens, s.tpm) if s.tpm is not None else 0
            if tb is not None and tb.level < need:
                return self._refuse(s, "tokens per minute", tb.wait_for(need), rb, tb)
            if s.max_parallel is not None and self._parallel.get(s.name, 0) >= s.max_parallel:
                return self._refuse(s, "concurrent requests", 1.0, rb, tb)
            plan.append((rb, tb, s))
        for rb, tb, s in plan:
            if rb is not None:
                rb.level -= 1
            if tb is not None:
                tb.level -= tokens
            if s.max_parallel is not None:
                self._parallel[s.name] = self._parallel.get(s.name, 0) + 1
        return Decision(True, headers=self._headers(plan[0]) if plan else {})

    def undo(self, scopes: Sequence[Scope], tokens: int) -> None:
        """Give back what an `acquire` that admitted just took (called before anything else
        ran, so no refill happened in between): admission refused by the budget takes nothing."""
        for s in scopes:
            if s.rpm is not None:
                self._buckets[(s.name, "r")].level += 1
            if s.tpm is not None:
                self._buckets[(s.name, "t")].level += tokens
            if s.max_parallel is not None:
                self._parallel[s.name] = max(0, self._parallel.get(s.name, 0) - 1)

    async def settle(
        self, scopes: Sequence[Scope], estimated: int, actual: int, request_id: str
    ) -> None:
        now = self._now()
        for s in scopes:
            if s.tpm is not None and actual != estimated:
                tb = self._bucket(s.name, "t", s.tpm, now)
                tb.level = min(tb.capacity, tb.level + estimated - actual)
            if s.max_parallel is not None:
                self._parallel[s.name] = max(0, self._parallel.get(s.name, 0) - 1)

    def _headers(
        self, item: tuple[TokenBucket | None, TokenBucket | None, Scope]
    ) -> dict[str, str]:
        rb, tb, s = item
        return rate_headers(
            s,
            rb.level if rb else 0,
            tb.level if tb else 0,
            rb.reset_s() if rb else 0,
            tb.reset_s() if tb else 0,
        )

    def _refuse(
        self, s: Scope, what: str, wait: float, rb: TokenBucket | None, tb: TokenBucket | None
    ) -> Decision:
        return Decision(
            False, max(wait, 0.001), f"{what} limit of {s.name}", self._headers((rb, tb, s))
        )
