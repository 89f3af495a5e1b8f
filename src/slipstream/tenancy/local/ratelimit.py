"""One replica's rate limits, in memory: both token buckets of a scope (requests/min and
tokens/min, refilled together) and its running count, for `LocalAdmission`.

A request asks every scope it belongs to (its key, its team) at once, and is admitted only if
all have room: nothing is consumed from any scope on a refusal. Tokens are estimated on entry
and corrected by `give_back` once the real usage is known (the bucket may go into debt).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from slipstream.tenancy.admission import WINDOW_S, Decision, Scope, rate_headers


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

    def take(self, scopes: Sequence[Scope], tokens: int) -> Decision:
        """Admit a request of `tokens` (estimated) into every scope, or refuse, taking nothing."""
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
        """Give back what a `take` that admitted just took (called before anything else
        ran, so no refill happened in between): admission refused by the budget takes nothing."""
        for s in scopes:
            st = self._states[s.name]
            st.requests += 1
            st.tokens += tokens
            st.parallel = max(0, st.parallel - 1)

    def give_back(self, scopes: Sequence[Scope], estimated: int, actual: int) -> None:
        """Settle a request `take` admitted: its token estimate corrected to the real usage,
        its concurrency slot freed."""
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
