"""Rate limits alone, shared through Redis: the `Limiter` protocol over `RedisAdmission`
(admission without a budget). The gateway itself admits through `RedisAdmission`, which takes
rate limits and the budget reservation in one script call."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from slipstream.tenancy.admission import Decision, Scope
from slipstream.tenancy.shared.admission import PARALLEL_TTL_S, RedisAdmission
from slipstream.tenancy.shared.guard import RedisGuard

__all__ = ["PARALLEL_TTL_S", "RedisLimiter"]


class RedisLimiter:
    def __init__(self, client: aioredis.Redis, guard: RedisGuard | None = None) -> None:
        self.shared = RedisAdmission(client, guard, lean=False)  # redis-py's connections only

    async def acquire(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        return (await self.shared.admit(scopes, tokens, request_id, None)).limits

    async def settle(
        self, scopes: Sequence[Scope], estimated: int, actual: int, request_id: str
    ) -> None:
        await self.shared.settle(scopes, estimated, actual, request_id, None, 0)

    async def aclose(self) -> None:
        await self.shared.aclose()
