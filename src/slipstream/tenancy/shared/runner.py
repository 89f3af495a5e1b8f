"""How the admission scripts reach Redis: one `ScriptRunner` interface, whatever client is
underneath.

A runner sends EVALSHA of a registered `Script` with its KEYS and ARGV, loads the script and
sends it again if this Redis does not know it yet (NOSCRIPT: a new or restarted server), and
returns the raw reply, which replies.py reads. Errors are redis-py's: `RedisError` (its
`ConnectionError` and `TimeoutError` included) or `OSError`, which the guard turns into the
in-memory fallback.

Order matters once: settlements pushed before an admission call must reach Redis first (the
admission must see them). A runner that can queue a call at once does so in `submit`;
the others return None there, and the admission waits for the push before it calls.

Implementations, chosen by `SLIPSTREAM_REDIS_CLIENT` (read once, in `runner_for`), for the
client comparison in benchmarks/redis_client.py:
  wire           (default) the hand-written pipelined connection (wire.py), or redis-py's pool
                 where that connection cannot speak the client's settings (TLS, ...)
  redis-py       redis-py's `Redis` client and its connection pool
  redis-py-conn  one bare redis-py `Connection`, one call at a time
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError

CLIENT_ENV = "SLIPSTREAM_REDIS_CLIENT"
CLIENTS = ("wire", "redis-py", "redis-py-conn")


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA-1, under which Redis caches it."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


class ScriptRunner(Protocol):
    async def run(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        """EVALSHA `script` (loading it on NOSCRIPT); the raw reply."""
        ...

    def submit(
        self, script: Script, keys: Sequence[str], args: Sequence[int | str]
    ) -> Awaitable[Any] | None:
        """`run`, queued now so Redis runs it before any call made after it; None if this
        runner cannot queue a call ahead of time (then `run` it, and wait for it before
        calls that must come after)."""
        ...

    async def aclose(self) -> None: ...


class PoolRunner:
    """redis-py's `Redis` client: each call takes a connection from its pool (a new one while
    all are busy) and gives it back."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        try:
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(script.text)
            return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    def submit(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> None:
        return None  # the pool sends on whichever connection is free: no order

    async def aclose(self) -> None:
        return None  # the client (and its pool) belongs to the caller


class ConnectionRunner:
    """One bare redis-py `Connection` (made with the client's settings), one call at a time:
    a call waits for the one before it to be answered."""

    def __init__(self, client: aioredis.Redis) -> None:
        pool = client.connection_pool
        self.conn: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        self._lock = asyncio.Lock()

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        async with self._lock:
            try:
                return await self._call("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self._call("SCRIPT", "LOAD", script.text)
                return await self._call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _call(self, *parts: str | int) -> Any:
        await self.conn.send_command(*parts)
        return await self.conn.read_response()  # on any failure it disconnects itself

    def submit(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> None:
        return None

    async def aclose(self) -> None:
        await self.conn.disconnect()


def runner_for(client: aioredis.Redis) -> ScriptRunner:
    """The runner `SLIPSTREAM_REDIS_CLIENT` names (default: wire) for `client`'s server."""
    from slipstream.tenancy.shared.wire import WireRunner

    choice = os.environ.get(CLIENT_ENV, "wire")
    if choice not in CLIENTS:
        raise ValueError(f"{CLIENT_ENV}={choice!r}: choose one of {', '.join(CLIENTS)}")
    if choice == "redis-py-conn":
        return ConnectionRunner(client)
    if choice == "wire" and (wire := WireRunner.for_client(client)) is not None:
        return wire
    return PoolRunner(client)
