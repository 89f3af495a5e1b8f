"""A circuit breaker per deployment: closed → open → half-open → closed.

Opens on `consecutive_failures` in a row, or when the error rate over the last `window_s`
reaches `error_rate` (with at least `min_requests` samples). After `cooldown_s` it lets
`half_open_probes` requests through at a time; one success closes it, one failure reopens it.
Only deployment faults count (connection, timeout, 5xx, upstream auth): a 429 is handled by
the deployment's Retry-After cooldown, a client's bad request says nothing about health.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from slipstream.config.schema import CircuitBreakerConfig

BUCKET_S = 0.25  # resolution of the error-rate window


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        config: CircuitBreakerConfig,
        now: Callable[[], float],
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.config = config
        self._now = now
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        # One bucket per `BUCKET_S` of [start, samples, failures]: memory stays bounded by
        # window_s / BUCKET_S whatever the request rate.
        self._window: deque[list[float]] = deque()
        self._window_total = 0
        self._window_failures = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cooldown has passed reads as half-open."""
        if (
            self._state is BreakerState.OPEN
            and self._now() - self._opened_at >= self.config.cooldown_s
        ):
            self._set(BreakerState.HALF_OPEN)
            self._probes_in_flight = 0
        return self._state

    def available(self) -> bool:
        """May a request be sent now? (No side effects: routing filters with this.)"""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            return self._probes_in_flight < self.config.half_open_probes
        return False

    def acquire(self) -> bool:
        """Claim the right to send one request; in half-open this takes a probe slot."""
        if not self.available():
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._probes_in_flight += 1
        return True

    def release(self) -> None:
        """The request ended without a verdict on health (cancelled, client error)."""
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight:
            self._probes_in_flight -= 1

    def record_success(self) -> None:
        self._consecutive = 0
        self._sample(False)
        if self._state is BreakerState.HALF_OPEN:
            self._window.clear()
            self._window_total = self._window_failures = 0
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._consecutive += 1
        self._sample(True)
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self._state is BreakerState.OPEN:
            return
        c = self.config
        n = self._window_total
        if self._consecutive >= c.consecutive_failures or (
            n >= c.min_requests and self._window_failures / n >= c.error_rate
        ):
            self._open()

    def _open(self) -> None:
        self._opened_at = self._now()
        self._probes_in_flight = 0
        self._set(BreakerState.OPEN)

    def _sample(self, failed: bool) -> None:
        now = self._now()
        w = self._window
        if w and now - w[-1][0] < BUCKET_S:
            w[-1][1] += 1
            w[-1][2] += failed
        else:
            w.append([now, 1, int(failed)])
        self._window_total += 1
        self._window_failures += failed
        horizon = now - self.config.window_s
        while w and w[0][0] < horizon:
            _, total, failures = w.popleft()
            self._window_total -= int(total)
            self._window_failures -= int(failures)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)
