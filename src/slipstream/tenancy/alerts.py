"""Soft budget alerts: POST a JSON event to a webhook when spend crosses a threshold.

Sent from a background task with a short timeout, once per scope, window and threshold
(per replica; with Redis, once overall via SET NX). A failed webhook is logged, never retried
on the request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import redis.asyncio as aioredis

from slipstream.store.records import MICRO
from slipstream.tenancy.admission import Crossing

logger = logging.getLogger("slipstream.tenancy.alerts")
TIMEOUT_S = 5.0


class BudgetAlerts:
    def __init__(
        self,
        url: str | None,
        thresholds: Sequence[float] = (0.5, 0.8, 1.0),
        redis: aioredis.Redis | None = None,
    ) -> None:
        self.url = url
        self.thresholds = sorted(thresholds)
        self._redis = redis
        self._sent: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def crossed(self, c: Crossing) -> list[float]:
        limit = c.scope.limit_micro
        return [t for t in self.thresholds if c.before_micro < t * limit <= c.spent_micro]

    def check(self, crossings: Sequence[Crossing]) -> None:
        """Called after settle; schedules a POST per newly crossed threshold."""
        if not self.url:
            return
        for c in crossings:
            for t in self.crossed(c):
                ident = f"{c.bucket}:{t}"
                if ident in self._sent:
                    continue
                self._sent.add(ident)
                task = asyncio.get_running_loop().create_task(self._send(ident, c, t))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send(self, ident: str, c: Crossing, threshold: float) -> None:
        assert self.url is not None
        if self._redis is not None and not await self._redis.set(
            "slipstream:alert:" + ident, 1, nx=True, ex=3024000
        ):
            return  # another replica sent it
        event = {
            "event": "budget_threshold",
            "scope": c.scope.name,
            "window": c.scope.window or "daily",
            "bucket": c.bucket,
            "threshold": threshold,
            "spent_usd": c.spent_micro / MICRO,
            "budget_usd": c.scope.limit_micro / MICRO,
        }
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=TIMEOUT_S)
            r = await self._client.post(self.url, json=event)
            r.raise_for_status()
        except Exception as e:
            logger.warning("budget alert webhook failed: %s", type(e).__name__)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
