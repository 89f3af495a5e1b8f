"""Admission takes rate limits and the budget reservation together: all or nothing (a request
refused by its budget takes no rate-limit tokens), and with Redis one script call to admit and
one to settle, whatever the number of scopes."""

from __future__ import annotations

import asyncio

import pytest
import redis as sync_redis
from tests.gateway.fakes import Fleet, chat

from slipstream.gateway import GatewayError
from slipstream.store import Limits, Store
from slipstream.tenancy.admission import (
    Admission,
    BudgetPlan,
    BudgetScope,
    Refusal,
    Reservation,
    Scope,
)
from slipstream.tenancy.local import LocalAdmission
from slipstream.tenancy.runtime import Tenancy
from slipstream.tenancy.shared.admission import RedisAdmission

from .conftest import MASTER, REDIS_URL, bearer, redis_client
from .script_calls import ScriptCalls

PER_TOKEN = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # 1000 micro-dollars per token


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_budget_refusal_takes_no_rate_limit_tokens(backend: str, redis_ns: str) -> None:
    rate = [Scope(f"key:{redis_ns}", rpm=3, tpm=1000, max_parallel=1)]
    spent_up = BudgetPlan([BudgetScope(f"key:{redis_ns}", 100, "daily")], 50)

    async def scenario() -> None:
        client = redis_client() if backend == "redis" else None
        adm: Admission = RedisAdmission(client) if client is not None else LocalAdmission()
        await adm.seed(spent_up.scopes[0], 100)  # the budget is spent
        for i in range(5):
            a = await adm.admit(rate, 400, f"r{i}", spent_up)
            assert a.limits.allowed and isinstance(a.budget, Refusal)
            assert a.budget.spent_micro == 100
        # Nothing was taken: the concurrency slot is free and all 3 requests/min are there.
        for i in range(3):
            a = await adm.admit(rate, 300, f"ok{i}", None)
            assert a.limits.allowed, a.limits.reason
            assert a.limits.headers["x-ratelimit-remaining-requests"] == str(2 - i)
            assert a.limits.headers["x-ratelimit-remaining-tokens"] == str(700 - 300 * i)
            await adm.settle(rate, 300, 300, f"ok{i}", None, 0)
        a = await adm.admit(rate, 1, "late", None)
        assert not a.limits.allowed and "requests per minute" in a.limits.reason
        await adm.aclose()
        if client is not None:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_rate_refusal_reserves_no_budget(backend: str, redis_ns: str) -> None:
    rate = [Scope(f"key:{redis_ns}", max_parallel=1)]
    plan = BudgetPlan([BudgetScope(f"team:{redis_ns}", 100, "daily")], 60)

    async def scenario() -> None:
        client = redis_client() if backend == "redis" else None
        adm: Admission = RedisAdmission(client) if client is not None else LocalAdmission()
        first = await adm.admit(rate, 1, "r1", plan)
        assert isinstance(first.budget, Reservation)
        for i in range(3):  # the slot is taken: refused before the budget is looked at
            a = await adm.admit(rate, 1, f"x{i}", plan)
            assert not a.limits.allowed and "concurrent" in a.limits.reason and a.budget is None
        crossings = await adm.settle(rate, 1, 1, "r1", first.budget, 30)
        assert [(c.before_micro, c.spent_micro) for c in crossings] == [(0, 30)]
        second = await adm.admit(rate, 1, "r2", plan)  # 30 spent + 0 reserved < 100
        assert isinstance(second.budget, Reservation)
        await adm.aclose()
        if client is not None:
            await client.aclose()

    asyncio.run(scenario())


def test_redis_admits_and_settles_in_one_script_call_each(sqlite_store: Store) -> None:
    """Key, team and model limits plus key and team budgets: one EVALSHA before the upstream
    call, one after (the push of settlements; see test_leases.py for many requests)."""
    from slipstream.config import parse_config
    from slipstream.gateway import Gateway

    team = sqlite_store.tenants.create_team(
        "admission-team", limits=Limits(rpm=50, tpm=100_000, budget_micro=10**9)
    )
    lim = Limits(rpm=5, tpm=10_000, max_parallel=4, budget_micro=10**9)
    key, rec = sqlite_store.tenants.create_key(team=team.name, limits=lim)
    dep = {"provider": "openai", "model": "m", "name": "a", "api_base": "http://x",
           "prices": PER_TOKEN}  # fmt: skip
    config = parse_config(
        {"models": [{"name": "chat", "deployments": [dep], "limits": {"rpm": 1000}}]}
    )

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        tenancy = Tenancy(sqlite_store, master_key=MASTER, redis=calls.client())
        await tenancy.start()
        gw = Gateway(config, Fleet().factory, features=[tenancy])
        await gw.handle("chat/completions", chat(max_tokens=10), None, bearer(key))
        assert calls.total == calls.admits == 1  # one script call (settling runs after)
        await asyncio.gather(*tenancy._settling)
        for _ in range(100):  # without alerts the settlement is pushed by a timer (PUSH_S)
            if calls.pushes:
                break
            await asyncio.sleep(0.01)
        assert calls.total == 2 and calls.pushes == 1
        for _ in range(4):
            await gw.handle("chat/completions", chat(max_tokens=10), None, bearer(key))
        with pytest.raises(GatewayError) as e:
            await gw.handle("chat/completions", chat(max_tokens=10), None, bearer(key))
        assert e.value.status == 429 and "requests per minute limit of key:" in e.value.message
        assert int(e.value.headers()["retry-after"]) >= 1
        await tenancy.aclose()
        await calls.aclose()

    try:
        asyncio.run(scenario())
    finally:
        r = sync_redis.Redis.from_url(REDIS_URL)
        for ident in (rec.id, team.id, "model:chat"):
            for k in r.scan_iter(f"*{ident}*"):
                r.delete(k)
        r.close()
    report = sqlite_store.spend.report("key")
    assert report[0]["requests"] == 5


def test_redis_books_keep_their_ttls_and_stale_slots_are_swept_at_the_cap(redis_ns: str) -> None:
    """Both token buckets of a scope live in one key that expires after two idle windows; a
    budget book gets its TTL when it is created; concurrency slots left by a replica that died
    (older than PARALLEL_TTL_S) stop counting when the scope reaches its cap."""
    from slipstream.tenancy.shared.scripts import BUDGET_PREFIX, PARALLEL_TTL_S, RATE_PREFIX

    name = f"key:{redis_ns}"
    rate = [Scope(name, rpm=10, tpm=1000, max_parallel=1)]
    plan = BudgetPlan([BudgetScope(name, 10**6, "daily")], 5)
    r = sync_redis.Redis.from_url(REDIS_URL)
    slots = f"{RATE_PREFIX}{name}:p"
    now_s = float(r.time()[0])
    r.zadd(slots, {"dead-replica": now_s - PARALLEL_TTL_S - 10})

    async def scenario() -> None:
        client = redis_client()
        adm = RedisAdmission(client)
        a = await adm.admit(rate, 100, "r1", plan)  # the dead slot is swept: admitted
        assert a.limits.allowed, a.limits.reason
        assert a.limits.headers["x-ratelimit-remaining-requests"] == "9"
        assert a.limits.headers["x-ratelimit-remaining-tokens"] == "900"
        assert isinstance(a.budget, Reservation)
        b = await adm.admit(rate, 100, "r2", plan)  # the live slot counts
        assert not b.limits.allowed and "concurrent" in b.limits.reason
        await adm.settle(rate, 100, 40, "r1", a.budget, 3)  # 60 tokens given back
        c = await adm.admit(rate, 100, "r3", None)
        assert c.limits.allowed
        assert c.limits.headers["x-ratelimit-remaining-requests"] == "8"
        assert 860 <= int(c.limits.headers["x-ratelimit-remaining-tokens"]) <= 870  # + refill
        await adm.aclose()
        await client.aclose()

    asyncio.run(scenario())
    try:
        assert r.zrange(slots, 0, -1) == [b"r3"]
        assert 0 < r.ttl(f"{RATE_PREFIX}{name}:b") <= 120
        book = BUDGET_PREFIX + a_book(r, name)
        assert r.hget(book, "spent") == b"3" and r.hget(book, "reserved") == b"0"
        assert r.ttl(book) > 30 * 86400
    finally:
        r.close()


def a_book(r: sync_redis.Redis, scope: str) -> str:
    """The one budget book of `scope` (its name ends in the window's start)."""
    from slipstream.tenancy.shared.scripts import BUDGET_PREFIX

    (key,) = list(r.scan_iter(f"{BUDGET_PREFIX}{scope}:*"))
    return key.decode()[len(BUDGET_PREFIX) :]
