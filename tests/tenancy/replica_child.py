"""One gateway replica (its own process) sharing Redis and the database with others.

Usage: python replica_child.py DB_URL KEY N START_AT. At START_AT (wall clock) it sends N
concurrent requests, held upstream for a moment so budget reservations overlap, and prints
how many were admitted.
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as aioredis
from tests.gateway.fakes import Fleet, Step, chat
from tests.tenancy.conftest import MASTER, REDIS_URL, bearer, tenant_gateway

from slipstream.gateway import GatewayError
from slipstream.store import Store
from slipstream.tenancy.runtime import Tenancy


async def main(url: str, key: str, n: int, start_at: float) -> int:
    tenancy = Tenancy(Store.open(url), master_key=MASTER, redis=aioredis.from_url(REDIS_URL))
    fleet = Fleet()
    gw = tenant_gateway(tenancy, fleet, prices={"input_per_mtok": 1000, "output_per_mtok": 1000})
    await tenancy.start()
    fleet["a"].default = Step(delay=0.3)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    body = chat(max_tokens=10)
    results = await asyncio.gather(
        *(gw.handle("chat/completions", body, None, bearer(key)) for _ in range(n)),
        return_exceptions=True,
    )
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, GatewayError):
            raise r
    await tenancy.aclose()
    return sum(not isinstance(r, GatewayError) for r in results)


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
