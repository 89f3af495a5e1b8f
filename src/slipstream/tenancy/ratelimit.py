"""Rate limits: requests/min and tokens/min token buckets, plus a concurrent-request cap.

A request asks every scope it belongs to (its key, its team) at once, and is admitted only if
all have room: nothing is consumed from any scope on a refusal. Tokens are estimated on entry
and corrected by `settle` once the real usage is known (the bucket may go into debt).
`MemoryLimiter` serves one replica; `RedisAdmission` (redis_admission.py) does the same
check-and-take, together with the budget reservation, in one Lua script so several replicas
share one limit.
"""

from __future__ import annotations

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


@dataclass(slots=True)
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


class _ScopeState:
    """One scope's books in memory: both buckets (refilled together) and its running count."""

    __slots__ = ("parallel", "requests", "rpm", "stamp", "tokens", "tpm")

    def __init__(self, rpm: int | None, tpm: int | None, now: float) -> None:
        self.rpm, self.tpm = rpm, tpm
        self.requests = float(rpm or 0)
        self.tokens = float(tpm or 0)
        self.stamp = now
        self.parallel = 0

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        self.stamp = now
        if (rpm := self.rpm) is not None:
            r = self.requests + elapsed * rpm / WINDOW_S
            self.requests = r if r < rpm else float(rpm)
        if (tpm := self.tpm) is not None:
            t = self.tokens + elapsed * tpm / WINDOW_S
            self.tokens = t if t < tpm else float(tpm)


class MemoryLimiter:
    """In-process limits for one replica (asyncio: each call runs without interleaving).

    Each scope's two buckets and concurrency count live in one object found with one dict
    lookup, and the headers are built for the first scope only: this runs on every request.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._states: dict[str, _ScopeState] = {}

    def _state(self, s: Scope, now: float) -> _ScopeState:
        st = self._states.get(s.name)
        if st is None or st.rpm != s.rpm or st.tpm != s.tpm:  # new, or its limits changed
            parallel = st.parallel if st is not None else 0
            st = self._states[s.name] = _ScopeState(s.rpm, s.tpm, now)
            st.parallel = parallel
        else:
            st.refill(now)
        return st

    async def acquire(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        return self.take(scopes, tokens)

    def take(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """`acquire` without the coroutine (LocalAdmission calls it on every request)."""
        now = self._now()
        states = []
        for s in scopes:
            st = self._state(s, now)
            rpm, tpm = s.rpm, s.tpm
            if rpm is not None and st.requests < 1:
                wait = (1 - st.requests) * WINDOW_S / rpm
                return self._refuse(s, st, "requests per minute", wait)
            if tpm is not None and st.tokens < (tokens if tokens < tpm else tpm):
                wait = (min(tokens, tpm) - st.tokens) * WINDOW_S / tpm
                return self._refuse(s, st, "tokens per minute", wait)
            if s.max_parallel is not None and st.parallel >= s.max_parallel:
                return self._refuse(s, st, "concurrent requests", 1.0)
            states.append(st)
        for st in states:
            st.requests -= 1
            st.tokens -= tokens
            st.parallel += 1
        return Decision(
            True,
            headers=rate_headers(scopes[0], states[0].requests, states[0].tokens, False)
            if scopes
            else {},
        )

    def undo(self, scopes: Sequence[Scope], tokens: int) -> None:
        """Give back what an `acquire` that admitted just took (called before anything else
        ran, so no refill happened in between): admission refused by the budget takes nothing."""
        for s in scopes:
            st = self._states[s.name]
            st.requests += 1
            st.tokens += tokens
            st.parallel = max(0, st.parallel - 1)

    async def settle(
        self, scopes: Sequence[Scope], estimated: int, actual: int, request_id: str
    ) -> None:
        self.give_back(scopes, estimated, actual)

    def give_back(self, scopes: Sequence[Scope], estimated: int, actual: int) -> None:
        """`settle` without the coroutine."""
        now = self._now()
        for s in scopes:
            st = self._states.get(s.name)
            if st is None:
                continue  # never admitted here (e.g. admitted through Redis)
            if s.tpm is not None and actual != estimated:
                st.refill(now)
                st.tokens = min(s.tpm, st.tokens + estimated - actual)
            st.parallel = max(0, st.parallel - 1)

    @staticmethod
    def _refuse(s: Scope, st: _ScopeState, what: str, wait: float) -> Decision:
        headers = rate_headers(s, st.requests, st.tokens)
        return Decision(False, max(wait, 0.001), f"{what} limit of {s.name}", headers)
