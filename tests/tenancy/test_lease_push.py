"""Leases going back to Redis: covered requests make no Redis call and their settlements
share one push, pushes reach Redis within the bound, unused leases go back (idle, close), and
a dead replica's leased slots are swept."""

from __future__ import annotations

import asyncio
import time

import redis as sync_redis

from slipstream.tenancy.admission import Reservation, Scope
from slipstream.tenancy.shared.admission import RedisAdmission
from slipstream.tenancy.shared.push import PUSH_S
from slipstream.tenancy.shared.records import IDLE_S
from slipstream.tenancy.shared.scripts import RATE_PREFIX

from .conftest import redis_client
from .leasing import BIG, at_once, big_scopes, book, level, reserved
from .script_calls import ScriptCalls


def test_covered_requests_make_no_redis_call_and_settlements_share_one_push(
    redis_ns: str,
) -> None:
    scopes, plan = big_scopes(redis_ns)

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client)
        first = await adm.admit(scopes, 100, "r0", plan)
        assert first.limits.allowed and calls.admits == 1
        admitted = [first]
        for i in range(1, 30):  # under half of what a lease holds (64): no top-up either
            a = at_once(adm.admit(scopes, 100, f"r{i}", plan))
            assert a.limits.allowed and isinstance(a.budget, Reservation)
            assert 0 <= int(a.limits.headers["x-ratelimit-remaining-requests"]) <= BIG
            admitted.append(a)
        assert calls.total == 1
        crossings = await asyncio.gather(
            *(adm.settle(scopes, 100, 60, f"r{i}", reserved(a), 7) for i, a in enumerate(admitted))
        )
        assert calls.pushes == 1 and calls.total == 2  # 30 settlements, one push
        spans = sorted((c.before_micro, c.spent_micro) for cs in crossings for c in cs)
        assert spans == [(7 * i, 7 * i + 7) for i in range(30)]  # exact, back to back
        await adm.aclose()
        await client.aclose()
        await calls.aclose()

    asyncio.run(scenario())


def test_unused_leases_go_back_when_idle_and_at_close(redis_ns: str, r: sync_redis.Redis) -> None:
    scopes, plan = big_scopes(redis_ns)
    key, team = scopes[0].name, scopes[1].name

    async def scenario() -> None:
        client = redis_client()
        adm = RedisAdmission(client)
        a = await adm.admit(scopes, 100, "r0", plan)
        await adm.settle(scopes, 100, 100, "r0", reserved(a), 10)
        assert level(r, key)[0] == BIG - 1 - 64  # its own request and a lease of 64
        assert r.zcard(f"{RATE_PREFIX}{key}:p") == 64  # leased slots (its own is freed)
        assert int(book(r, key)[b"reserved"]) == 640  # 64 worst cases
        await asyncio.sleep(IDLE_S + 0.6)
        assert BIG - 1 <= level(r, key)[0] <= BIG and level(r, team)[1] > BIG - 200
        assert r.zcard(f"{RATE_PREFIX}{key}:p") == 0
        assert book(r, key) == {b"spent": b"10", b"reserved": b"0"}
        a = await adm.admit(scopes, 100, "r1", plan)  # leases again, given back at close
        assert r.zcard(f"{RATE_PREFIX}{key}:p") == 65
        await adm.settle(scopes, 100, 100, "r1", reserved(a), 10)
        await adm.aclose()
        await client.aclose()

    asyncio.run(scenario())
    assert r.zcard(f"{RATE_PREFIX}{key}:p") == 0
    assert book(r, key) == {b"spent": b"20", b"reserved": b"0"}
    assert level(r, key)[0] >= BIG - 2


def test_settled_spend_reaches_redis_within_the_bound(redis_ns: str, r: sync_redis.Redis) -> None:
    scopes, plan = big_scopes(redis_ns)
    key = scopes[0].name

    async def scenario() -> list[float]:
        client = redis_client()
        adm = RedisAdmission(client)
        await adm.admit(scopes, 100, "warm", plan)  # leases taken: the rest is local
        delays = []
        for i in range(5):
            a = at_once(adm.admit(scopes, 100, f"r{i}", plan))
            t0 = time.monotonic()
            settling = asyncio.ensure_future(adm.settle(scopes, 100, 50, f"r{i}", reserved(a), 1))
            while int(book(r, key).get(b"spent", 0)) < i + 1:
                await asyncio.sleep(0.001)
            delays.append(time.monotonic() - t0)
            await settling
        await adm.aclose()
        await client.aclose()
        return delays

    delays = asyncio.run(scenario())
    assert all(d < 0.05 for d in delays), delays  # documented bound: 50 ms
    assert max(delays) >= PUSH_S * 0.5  # and they do wait to share a push


def test_32_concurrent_requests_make_far_fewer_than_two_calls_each(redis_ns: str) -> None:
    scopes, plan = big_scopes(redis_ns)

    async def scenario() -> tuple[int, int]:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client)
        done = 0

        async def worker(w: int) -> None:
            nonlocal done
            for i in range(40):
                a = await adm.admit(scopes, 100, f"{w}-{i}", plan)
                assert a.limits.allowed
                await asyncio.sleep(0)  # the upstream call
                await adm.settle(scopes, 100, 70, f"{w}-{i}", reserved(a), 5)
                done += 1

        await asyncio.gather(*(worker(w) for w in range(32)))
        await adm.aclose()
        await client.aclose()
        await calls.aclose()
        return calls.total, done

    total, done = asyncio.run(scenario())
    assert done == 32 * 40 and total < done / 10


def test_a_dead_replicas_leased_slots_are_swept(redis_ns: str, r: sync_redis.Redis) -> None:
    name = f"key:{redis_ns}"
    scopes = [Scope(name, max_parallel=640)]  # 10 slots per lease

    async def fill(adm: RedisAdmission, tag: str) -> int:
        n = 0
        while (await adm.admit(scopes, 1, f"{tag}{n}", None)).limits.allowed:
            n += 1
        return n

    async def scenario() -> tuple[int, int]:
        clients = [redis_client(), redis_client()]
        dead = RedisAdmission(clients[0], lease_ttl_s=0.5)
        live = RedisAdmission(clients[1], lease_ttl_s=0.5)
        assert (await dead.admit(scopes, 1, "d0", None)).limits.allowed
        assert dead.leases.rate[name].slots == 10
        assert dead.pusher._keeper is not None
        dead.pusher._keeper.cancel()  # it dies: nobody refreshes or gives back its leased slots
        before = await fill(live, "a")
        await asyncio.sleep(0.6)
        after = await fill(live, "b")
        await live.aclose()
        for c in clients:
            await c.aclose()
        return before, after

    before, after = asyncio.run(scenario())
    assert before == 640 - 1 - 10  # the dead replica's request and its 10 leased slots
    assert after == 10  # its leased slots expired; its request's own slot has not


def test_without_crossings_to_report_a_settle_does_not_wait_for_its_push(
    redis_ns: str, r: sync_redis.Redis
) -> None:
    scopes, plan = big_scopes(redis_ns)
    key = scopes[0].name

    async def scenario() -> None:
        calls = await ScriptCalls.start()
        client = calls.client()
        adm = RedisAdmission(client)
        adm.report_crossings = False  # no budget alerts configured
        warm = await adm.admit(scopes, 100, "warm", plan)
        assert await adm.settle(scopes, 100, 50, "warm", reserved(warm), 0) == []
        for i in range(5):
            a = at_once(adm.admit(scopes, 100, f"r{i}", plan))
            assert at_once(adm.settle(scopes, 100, 50, f"r{i}", reserved(a), 3)) == []
            assert not at_once(adm.settle(scopes, 100, 50, f"r{i}", reserved(a), 3))  # once
        assert calls.pushes == 0 and calls.total == 1
        t0 = time.monotonic()
        while int(book(r, key).get(b"spent", 0)) < 15:
            await asyncio.sleep(0.001)
        assert time.monotonic() - t0 < 0.05 and calls.pushes == 1  # one push, in the bound
        await adm.aclose()
        await client.aclose()
        await calls.aclose()

    asyncio.run(scenario())
    assert book(r, key) == {b"spent": b"15", b"reserved": b"0"}
