"""The lean Redis connection of the admission scripts: replies reach the right callers when
hundreds are in flight, unknown scripts are loaded, SELECT is honoured, a silent server
times out (and admission falls back to local books), and TLS is left to redis-py."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
import uvloop

from slipstream.tenancy.admission import BudgetPlan, BudgetScope, Reservation, Scope
from slipstream.tenancy.shared.admission import RedisAdmission
from slipstream.tenancy.shared.wire import RedisWire

from .conftest import REDIS_URL

ECHO = "return {KEYS[1], ARGV[1]}"


async def close_server(server: asyncio.Server, peers: list[asyncio.StreamWriter]) -> None:
    """Close a fake Redis server and the connections it accepted."""
    for w in peers:
        w.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # `slipstream serve` runs uvloop
def test_pipelined_calls_get_their_own_replies_and_unknown_scripts_load(loop: str) -> None:
    script = f"-- {uuid.uuid4().hex}\n{ECHO}"  # never loaded: the first call meets NOSCRIPT

    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL)
        wire = RedisWire.for_client(client)
        assert wire is not None
        sha = client.register_script(script).sha
        replies = await asyncio.gather(
            *(wire.evalsha(sha, script, [f"k{i}"], [i]) for i in range(300))
        )
        assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(300)]
        await wire.aclose()
        await client.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop" else None) as r:
        r.run(scenario())


def test_lazy_commands_go_out_alone_or_with_the_next_eager_one() -> None:
    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL)
        wire = RedisWire.for_client(client)
        assert wire is not None
        sha = client.register_script(ECHO).sha
        assert await wire.evalsha(sha, ECHO, ["a"], [1], lazy=True) == [b"a", b"1"]  # timer
        lazy = [
            asyncio.ensure_future(wire.evalsha(sha, ECHO, ["l"], [i], lazy=True)) for i in range(5)
        ]
        await asyncio.sleep(0)
        assert await wire.evalsha(sha, ECHO, ["e"], [9]) == [b"e", b"9"]
        assert await asyncio.gather(*lazy) == [[b"l", str(i).encode()] for i in range(5)]
        await wire.aclose()
        await client.aclose()

    asyncio.run(scenario())


def test_a_submitted_call_runs_before_any_call_made_after_it() -> None:
    """`submit` queues at once (settlements pushed ahead of the admission that must see
    them); before the connection is open it declines, and the caller uses `evalsha`."""
    key = f"slipstream:test:wire:{uuid.uuid4().hex}"
    incr = "return redis.call('INCRBY', KEYS[1], ARGV[1])"

    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL)
        wire = RedisWire.for_client(client)
        assert wire is not None
        sha = client.register_script(incr).sha
        assert wire.submit(sha, [key], [1]) is None  # not connected yet
        assert await wire.evalsha(sha, incr, [key], [1]) == 1  # connects, loads the script
        first = wire.submit(sha, [key], [10])
        assert first is not None
        later = asyncio.ensure_future(wire.evalsha(sha, incr, [key], [100], lazy=True))
        assert await first == 11 and await later == 111
        await wire.aclose()
        await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        r = sync_redis.Redis.from_url(REDIS_URL)
        r.delete(key)
        r.close()


def test_select_picks_the_database_of_the_url() -> None:
    key = f"slipstream:test:wire:{uuid.uuid4().hex}"

    async def scenario() -> None:
        client = aioredis.from_url(REDIS_URL.rsplit("/", 1)[0] + "/5")
        wire = RedisWire.for_client(client)
        assert wire is not None
        text = "return redis.call('SET', KEYS[1], ARGV[1], 'EX', 60)"
        await wire.evalsha(client.register_script(text).sha, text, [key], ["v"])
        await wire.aclose()
        await client.aclose()

    asyncio.run(scenario())
    db5 = sync_redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + "/5")
    db0 = sync_redis.Redis.from_url(REDIS_URL)
    try:
        assert db5.get(key) == b"v" and db0.get(key) is None
    finally:
        db5.delete(key)
        db5.close()
        db0.close()


def test_a_silent_redis_times_out_and_admission_falls_back_at_once() -> None:
    async def scenario() -> None:
        peers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer)  # reads nothing, answers nothing

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        adm = RedisAdmission(client)
        scopes = [Scope("key:silent", rpm=2)]
        plan = BudgetPlan([BudgetScope("key:silent", 1000)], 10)
        t0 = time.monotonic()
        first = await adm.admit(scopes, 1, "r1", plan)  # times out, then local books
        assert 0.15 < time.monotonic() - t0 < 1.5
        assert first.limits.allowed and isinstance(first.budget, Reservation)
        assert first.budget.local
        t0 = time.monotonic()
        second = await adm.admit(scopes, 1, "r2", plan)  # guard open: no waiting on Redis
        third = await adm.admit(scopes, 1, "r3", plan)
        assert time.monotonic() - t0 < 0.1
        assert second.limits.allowed and not third.limits.allowed  # rpm 2, locally
        await adm.aclose()
        await client.aclose()
        await close_server(server, peers)

    asyncio.run(scenario())


def test_tls_and_other_connections_are_left_to_redis_py() -> None:
    assert RedisWire.for_client(aioredis.from_url("rediss://127.0.0.1:6380/0")) is None
    assert RedisWire.for_client(aioredis.from_url(REDIS_URL, client_name="x")) is None
    assert RedisWire.for_client(aioredis.from_url("unix:///tmp/redis.sock?db=1")) is not None


def test_the_oldest_live_call_times_out_and_the_ones_behind_it_fail_at_once() -> None:
    """One watchdog serves every deadline: a cancelled call at the head does not hide the
    timeout of the next one, and calls queued behind a timed-out one are failed with it."""

    async def scenario() -> None:
        peers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
        wire = RedisWire.for_client(client)
        assert wire is not None
        head = asyncio.ensure_future(wire.call(b"*1\r\n$4\r\nPING\r\n"))
        await asyncio.sleep(0.1)
        head.cancel()
        t0 = time.monotonic()
        second = asyncio.ensure_future(wire.call(b"*1\r\n$4\r\nPING\r\n"))
        await asyncio.sleep(0.05)
        third = asyncio.ensure_future(wire.call(b"*1\r\n$4\r\nPING\r\n", lazy=True))
        with pytest.raises(TimeoutError):
            await second
        assert 0.25 < time.monotonic() - t0 < 1.0
        with pytest.raises(ConnectionError):
            await third
        assert time.monotonic() - t0 < 1.0
        await wire.aclose()
        await client.aclose()
        await close_server(server, peers)

    asyncio.run(scenario())
