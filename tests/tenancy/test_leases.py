"""Leases: shared capacity taken from Redis in chunks and spent locally. Small limits are
never leased, near a limit nothing is leased, two replicas with leases never over-admit, a
lease taken under old limits is not spent under new ones, and covers stay current across
limit changes and UTC days. Settlements and give-backs: test_lease_push.py."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import redis as sync_redis

from slipstream.tenancy.admission import BudgetPlan, BudgetScope, Reservation, Scope
from slipstream.tenancy.shared.admission import RedisAdmission
from slipstream.tenancy.shared.leases import Leases
from slipstream.tenancy.shared.records import RateLease, hold
from slipstream.tenancy.shared.scripts import RATE_PREFIX

from .conftest import redis_client
from .leasing import BIG, at_once, big_scopes, book, level, reserved
from .script_calls import ScriptCalls


def test_small_limits_are_never_leased() -> None:
    assert hold(63, 1) == 0 and hold(64, 1) == 1 and hold(10**6, 1) == 64
    assert hold(6400, 100) == 100 and hold(6399, 100) == 0  # one request's worth at least
    assert hold(None, 1) == 0


def test_near_the_limit_nothing_is_leased_and_every_request_asks_redis(
    redis_ns: str, r: sync_redis.Redis
) -> None:
    name = f"key:{redis_ns}"
    rpm = 64_000  # may hold 64 requests, but none once under 16000 are left
    scopes = [Scope(name, rpm=rpm)]

    def set_level(v: int) -> float:
        t0 = time.monotonic()
        secs, micros = cast(tuple[int, int], r.time())
        r.set(f"{RATE_PREFIX}{name}:b", f"{v} {secs + micros / 1e6} x 0", ex=120)
        return t0

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client)
        set_level(16001)
        a = await adm.admit(scopes, 1, "r0", None)  # 16000 left: still leased
        assert a.limits.allowed and adm.leases.rate[name].requests == 64
        adm.leases.rate[name].requests = 0
        t0 = set_level(15000)
        for i in range(5):
            a = await adm.admit(scopes, 1, f"n{i}", None)
            assert a.limits.allowed and adm.leases.rate[name].requests == 0
        refilled = (time.monotonic() - t0) * rpm / 60
        assert calls.admits == 6
        assert 15000 - 5 <= level(r, name)[0] <= 15000 - 5 + refilled  # only the requests
        await adm.aclose()
        await client.aclose()
        await calls.aclose()

    asyncio.run(scenario())


def test_a_lease_taken_under_old_limits_is_not_spent_under_new_ones(
    redis_ns: str, r: sync_redis.Redis
) -> None:
    scopes, plan = big_scopes(redis_ns)
    key = scopes[0].name

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client)
        await adm.admit(scopes, 100, "r0", plan)
        assert adm.leases.rate[key].requests == 64 and calls.admits == 1
        lowered = [Scope(key, rpm=640, tpm=BIG, max_parallel=BIG), scopes[1]]
        smaller = BudgetPlan([BudgetScope(key, 10**6, "daily")], 10)
        a = await adm.admit(lowered, 100, "r1", smaller)  # not from the old leases
        assert a.limits.allowed and calls.admits == 2
        assert adm.leases.rate[key].requests == hold(640, 1) == 10
        assert int(book(r, key)[b"reserved"]) == 10 + 10 + hold(10**6, 10)  # old lease back
        await adm.aclose()
        await client.aclose()
        await calls.aclose()

    asyncio.run(scenario())


def test_two_replicas_with_leases_never_over_admit(redis_ns: str, r: sync_redis.Redis) -> None:
    """640 concurrency slots, then a budget of 1000 worst cases (both leased: 10 slots or 15
    worst cases per lease), spent by 16 workers per replica, each admitting until refused."""
    slots = 640
    rate = [Scope(f"key:{redis_ns}", rpm=BIG, tpm=BIG, max_parallel=slots)]
    budget = BudgetPlan([BudgetScope(f"team:{redis_ns}", 100_000, "daily")], 100)
    assert hold(slots, 1) == 10 and hold(100_000, 100) == 1562

    async def replica(
        adm: RedisAdmission, tag: str, scopes: list[Scope], plan: BudgetPlan | None
    ) -> int:
        admitted = 0

        async def worker(w: int) -> None:
            nonlocal admitted
            for i in range(10_000):
                a = await adm.admit(scopes, 10, f"{tag}-{w}-{i}", plan)
                if not a.limits.allowed or not isinstance(a.budget, Reservation | None):
                    return
                admitted += 1
                await asyncio.sleep(0)

        await asyncio.gather(*(worker(w) for w in range(16)))
        return admitted

    async def scenario(scopes: list[Scope], plan: BudgetPlan | None) -> int:
        clients = [redis_client(), redis_client()]
        adms = [RedisAdmission(c) for c in clients]
        got = await asyncio.gather(*(replica(a, f"{i}", scopes, plan) for i, a in enumerate(adms)))
        for adm in adms:
            await adm.aclose()
        for c in clients:
            await c.aclose()
        return sum(got)

    admitted = asyncio.run(scenario(rate, None))  # nothing settles: slots stay taken
    assert slots - 2 <= admitted <= slots
    admitted = asyncio.run(scenario(rate[:0], budget))  # nor do reservations
    assert 999 <= admitted <= 1001  # reservations: < 1 worst case over
    assert int(book(r, f"team:{redis_ns}")[b"reserved"]) == admitted * 100


def test_covered_requests_see_limits_changed_through_another_list(
    redis_ns: str, r: sync_redis.Redis
) -> None:
    """Covers are kept per list of scopes; a lease whose limits changed (through another key's
    list naming the same team) is not spent under the old ones, and in-flight requests of the
    old list still settle."""
    _, plan = big_scopes(redis_ns)
    team = f"team:{redis_ns}"
    scopes = [Scope(f"key:{redis_ns}", BIG, BIG, BIG), Scope(team, BIG, BIG)]

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client)
        a0 = await adm.admit(scopes, 100, "r0", plan)
        a1 = at_once(adm.admit(scopes, 100, "r1", plan))
        other = [Scope(f"key:{redis_ns}2", BIG, BIG, BIG), Scope(team, rpm=640, tpm=BIG)]
        assert (await adm.admit(other, 100, "o0", None)).limits.allowed
        assert calls.admits == 2 and adm.leases.rate[team].requests == hold(640, 1)
        a2 = await adm.admit(scopes, 100, "r2", plan)  # the old limits: asks Redis again
        assert a2.limits.allowed and calls.admits == 3
        for rid, a in (("r1", a1), ("r2", a2), ("r0", a0)):
            (crossing,) = await adm.settle(scopes, 100, 100, rid, reserved(a), 5)
            assert crossing.spent_micro - crossing.before_micro == 5
        await adm.aclose()
        await client.aclose()
        await calls.aclose()

    asyncio.run(scenario())
    assert book(r, scopes[0].name) == {b"spent": b"15", b"reserved": b"0"}


def test_book_names_turn_with_the_day_under_cached_covers(redis_ns: str) -> None:
    import datetime as dt

    scopes, _ = big_scopes(redis_ns)
    plan = BudgetPlan([BudgetScope(f"key:{redis_ns}", BIG, "daily")], 10)
    clock = [dt.datetime(2030, 1, 1, 23, 59, 59, 900000, tzinfo=dt.UTC)]

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client, now=lambda: clock[0])
        a = await adm.admit(scopes, 100, "r0", plan)
        b = at_once(adm.admit(scopes, 100, "r1", plan))  # covered: the same day's book
        assert reserved(a).scopes[0][1] == reserved(b).scopes[0][1] == f"key:{redis_ns}:2030-01-01"
        clock[0] += dt.timedelta(seconds=0.2)
        c = await adm.admit(scopes, 100, "r2", plan)  # a new day's book: not leased yet
        assert reserved(c).scopes[0][1] == f"key:{redis_ns}:2030-01-02" and calls.admits == 2
        for rid, x in (("r0", a), ("r1", b), ("r2", c)):
            await adm.settle(scopes, 100, 100, rid, reserved(x), 5)
        await adm.aclose()
        await client.aclose()
        await calls.aclose()

    asyncio.run(scenario())


def test_cover_headers_are_the_lease_headers() -> None:
    leases = Leases()
    for scope in (Scope("k", rpm=1000, tpm=50_000), Scope("k", rpm=100), Scope("k", tpm=7)):
        lease = leases.rate["k"] = RateLease(scope)
        cover = leases.cover([scope], [])
        assert cover is not None
        for seen, held, now in ((0.0, 0, 0.0), (10.5, 3, 1.0), (-50.0, 64, 2.0), (1e9, 64, 3.0)):
            lease.level_requests = lease.level_tokens = seen
            lease.requests = lease.tokens = held
            lease.seen_at = 0.5
            assert cover.headers(now) == leases.headers(scope, now)
