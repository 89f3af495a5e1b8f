"""Redis must never become the gateway's single point of failure.

When a Redis call fails, the guard opens for `cooldown_s`: limits and budgets fall back to
this replica's in-memory books (per-replica enforcement, logged once), and requests keep
flowing without waiting on a dead socket. The first call after the cooldown tries Redis again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("slipstream.tenancy.redis")


class RedisGuard:
    def __init__(self, cooldown_s: float = 5.0, now: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_s = cooldown_s
        self._now = now
        self._open_until = 0.0
        self.failures = 0

    def usable(self) -> bool:
        return self._now() >= self._open_until

    def failed(self, what: str, error: BaseException) -> None:
        if self.usable():
            logger.error(
                "redis unavailable during %s (%s): using per-replica limits and budgets for %.0fs",
                what, type(error).__name__, self.cooldown_s,
            )  # fmt: skip
        self.failures += 1
        self._open_until = self._now() + self.cooldown_s
