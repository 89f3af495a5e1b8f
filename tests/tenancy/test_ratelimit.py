"""Rate limits: buckets refill over time, 429s carry OpenAI headers, and two replicas sharing
Redis enforce one limit."""

from __future__ import annotations

import asyncio

import pytest
from tests.gateway.fakes import Fleet, Step, chat

from slipstream.gateway import GatewayError
from slipstream.store import Limits, Store
from slipstream.tenancy.admission import Decision, Scope
from slipstream.tenancy.local import LocalAdmission
from slipstream.tenancy.local.ratelimit import MemoryLimiter
from slipstream.tenancy.runtime import Tenancy
from slipstream.tenancy.shared import RedisAdmission

from .conftest import MASTER, bearer, redis_client, tenant_gateway


class Now:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_memory_buckets_refill_and_refuse_without_consuming() -> None:
    now = Now()
    adm = LocalAdmission(MemoryLimiter(now))
    s = [Scope("key:a", rpm=60, tpm=1000)]

    async def acquire(tokens: int) -> Decision:
        return (await adm.admit(s, tokens, "r", None)).limits

    async def scenario() -> None:
        for _ in range(60):
            assert (await acquire(10)).allowed
        d = await acquire(10)
        assert not d.allowed and "requests per minute" in d.reason
        assert d.retry_after_s == pytest.approx(1.0, rel=0.01)  # 1 request per second refill
        assert d.headers["x-ratelimit-remaining-requests"] == "0"
        assert d.headers["x-ratelimit-remaining-tokens"] == "400"  # the refusal took nothing
        now.t += 1.0
        assert (await acquire(10)).allowed
        # tokens: estimate 390 now, corrected to 10 on settle → 380 refunded
        now.t += 60
        assert (await acquire(990)).allowed
        assert not (await acquire(20)).allowed
        await adm.settle(s, 990, 10, "r", None, 0)
        d = await acquire(900)
        assert d.allowed, d.reason

    asyncio.run(scenario())


def test_max_parallel_is_released_on_settle() -> None:
    adm = LocalAdmission(MemoryLimiter(Now()))
    s = [Scope("key:p", max_parallel=2), Scope("team:t", rpm=100)]

    async def scenario() -> None:
        assert (await adm.admit(s, 1, "1", None)).limits.allowed
        assert (await adm.admit(s, 1, "2", None)).limits.allowed
        d = (await adm.admit(s, 1, "3", None)).limits
        assert not d.allowed and "concurrent" in d.reason
        await adm.settle(s, 1, 1, "1", None, 0)
        assert (await adm.admit(s, 1, "4", None)).limits.allowed

    asyncio.run(scenario())


def test_gateway_sends_ratelimit_headers_and_a_429_with_retry_after(sqlite_store: Store) -> None:
    key, _ = sqlite_store.tenants.create_key(limits=Limits(rpm=2, tpm=100_000))

    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet())
        for i in range(2):
            ok = (await gw.handle("chat/completions", chat(), None, bearer(key))).headers()
            # answered requests carry the limits too, as OpenAI's API does
            assert ok["x-ratelimit-limit-requests"] == "2"
            assert ok["x-ratelimit-remaining-requests"] == str(1 - i)
            assert ok["x-ratelimit-limit-tokens"] == "100000"
            assert 0 < int(ok["x-ratelimit-remaining-tokens"]) < 100_000
            assert "x-request-id" in ok
            assert not any(h.startswith("x-ratelimit-reset") for h in ok)  # 429s carry those
        with pytest.raises(GatewayError) as e:
            await gw.handle("chat/completions", chat(), None, bearer(key))
        err = e.value
        assert err.status == 429 and "requests per minute" in err.message
        h = {**err.headers(), **err.error.headers}
        assert int(h["retry-after"]) >= 1
        assert h["x-ratelimit-limit-requests"] == "2" and h["x-ratelimit-remaining-requests"] == "0"
        assert h["x-ratelimit-limit-tokens"] == "100000"
        assert float(h["x-ratelimit-reset-requests"].rstrip("s")) > 0
        assert float(h["x-ratelimit-reset-tokens"].rstrip("s")) >= 0
        await tenancy.aclose()

    asyncio.run(scenario())


def test_concurrency_slot_is_returned_after_a_stream_ends(sqlite_store: Store) -> None:
    key, _ = sqlite_store.tenants.create_key(limits=Limits(max_parallel=1))

    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gate = asyncio.Event()
        fleet = Fleet(a=[Step(gate=gate)])
        gw = tenant_gateway(tenancy, fleet)
        first = asyncio.create_task(gw.handle("chat/completions", chat(), None, bearer(key)))
        await asyncio.sleep(0.05)
        with pytest.raises(GatewayError) as e:
            await gw.handle("chat/completions", chat(), None, bearer(key))
        assert e.value.status == 429 and "concurrent" in e.value.message
        gate.set()
        await first
        s = await gw.handle_stream("chat/completions", chat(stream=True), None, bearer(key))
        async for _ in s:
            pass
        await gw.handle("chat/completions", chat(), None, bearer(key))
        await tenancy.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("limit", [20, 37])
def test_two_replicas_sharing_redis_admit_the_limit(redis_ns: str, limit: int) -> None:
    """N=120 concurrent admissions by two replicas' admissions against one rpm limit."""

    async def scenario() -> int:
        a, b = redis_client(), redis_client()
        la, lb = RedisAdmission(a), RedisAdmission(b)
        scope = [Scope(f"key:{redis_ns}", rpm=limit, tpm=limit * 100, max_parallel=None)]
        results = await asyncio.gather(
            *((la if i % 2 else lb).admit(scope, 50, f"r{i}", None) for i in range(120))
        )
        for adm, client in ((la, a), (lb, b)):
            await adm.aclose()
            await client.aclose()
        return sum(x.limits.allowed for x in results)

    admitted = asyncio.run(scenario())
    assert limit - 1 <= admitted <= limit + 1


def test_redis_parallel_and_token_correction(redis_ns: str) -> None:
    async def scenario() -> None:
        a, b = redis_client(), redis_client()
        la, lb = RedisAdmission(a), RedisAdmission(b)
        s = [Scope(f"key:{redis_ns}", tpm=1000, max_parallel=2)]
        assert (await la.admit(s, 600, "r1", None)).limits.allowed
        d = (await lb.admit(s, 600, "r2", None)).limits
        assert not d.allowed and "tokens per minute" in d.reason
        await la.settle(s, 600, 100, "r1", None, 0)  # real usage was 100: 500 refunded
        assert (await lb.admit(s, 600, "r2", None)).limits.allowed
        assert (await la.admit(s, 1, "r3", None)).limits.allowed  # 300 left; r2, r3 in flight
        d = (await lb.admit(s, 1, "r4", None)).limits
        assert not d.allowed and "concurrent" in d.reason
        await lb.settle(s, 600, 600, "r2", None, 0)  # r2 done: its slot frees for both
        assert (await la.admit(s, 1, "r5", None)).limits.allowed
        for adm, client in ((la, a), (lb, b)):
            await adm.aclose()
            await client.aclose()

    asyncio.run(scenario())


def test_redis_down_falls_back_to_per_replica_limits_quickly(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    import redis.asyncio as aioredis

    key, _ = sqlite_store.tenants.create_key(limits=Limits(rpm=3, budget_micro=10**9))

    async def scenario() -> list[int]:
        dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        tenancy = Tenancy(sqlite_store, master_key=MASTER, redis=dead)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet())
        statuses = []
        t0 = time.monotonic()
        for _ in range(5):
            try:
                r = await gw.handle("chat/completions", chat(), None, bearer(key))
                statuses.append(r.response.status)
            except GatewayError as e:
                statuses.append(e.status)
        assert time.monotonic() - t0 < 2.0  # one failed connect, then no waiting on Redis
        await tenancy.aclose()
        return statuses

    statuses = asyncio.run(scenario())
    assert statuses == [200, 200, 200, 429, 429]  # still limited, by this replica's books
    assert "redis unavailable" in caplog.text


def test_a_model_limit_applies_to_all_keys_together(sqlite_store: Store) -> None:
    from slipstream.config import parse_config
    from slipstream.gateway import Gateway

    k1, _ = sqlite_store.tenants.create_key()
    k2, _ = sqlite_store.tenants.create_key()
    dep = {"provider": "local", "model": "m", "name": "a"}
    config = parse_config(
        {"models": [{"name": "chat", "deployments": [dep], "limits": {"rpm": 3}}]}
    )

    async def scenario() -> list[int]:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gw = Gateway(config, Fleet().factory, features=[tenancy])
        out = []
        for key in (k1, k2, k1, k2, MASTER):
            try:
                out.append(
                    (await gw.handle("chat/completions", chat(), None, bearer(key))).response.status
                )
            except GatewayError as e:
                assert "model:chat" in e.message
                out.append(e.status)
        await tenancy.aclose()
        return out

    assert asyncio.run(scenario()) == [200, 200, 200, 429, 429]


def test_new_limits_apply_once_a_refresh_replaces_the_key(sqlite_store: Store) -> None:
    """The limits stage keeps each key's scopes between requests; a refreshed record with
    other limits must not be served the old ones."""
    key, rec = sqlite_store.tenants.create_key(limits=Limits(rpm=1))

    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet())
        await gw.handle("chat/completions", chat(), None, bearer(key))
        with pytest.raises(GatewayError) as e:
            await gw.handle("chat/completions", chat(), None, bearer(key))
        assert e.value.status == 429
        sqlite_store.tenants._update(rec.id, rpm=None, max_parallel=1)
        await tenancy.refresh()
        for _ in range(3):  # no rpm any more; one request at a time is within max_parallel
            r = await gw.handle("chat/completions", chat(), None, bearer(key))
            assert r.response.status == 200
        await tenancy.aclose()

    asyncio.run(scenario())
