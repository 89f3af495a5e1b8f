"""A lean, pipelined Redis connection for the admission scripts.

redis-py costs ~250 µs of CPU per command on the 2-core development box (its pool, retry
and timeout wrappers, asyncio streams and observability hooks), against ~60 µs for the same
EVALSHA written straight to the transport and parsed by hiredis in C (measured with uvloop;
~30 µs each when 32 requests share the connection). With leases (leases.py) most requests
make no call at all; the ones left (admissions not covered by leases, lease top-ups, pushes
of settlements) go through here.

One connection per `Tenancy`, opened on first use: calls are queued without a lock or a
pool, the commands of one event-loop iteration leave in one write, and replies are matched
to callers in order. `submit` queues a call at once, so Redis runs it before any call made
after it (a push of settlements before the admission that must see them). Lazy calls go
with the next eager write, or within `LAZY_S` (5 ms). A call that times out closes the
connection, failing the calls behind it; the next call reconnects. Errors are
`ConnectionError`/`TimeoutError` (OSError) or redis-py's `ResponseError` (a RedisError), as
with redis-py, so callers' fallbacks stay the same. Only plain TCP or Unix-socket
connections with optional AUTH and SELECT are spoken here; for anything else (TLS, client
names, RESP3, credential providers) `for_client` returns None and redis-py is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ResponseError

from slipstream.tenancy.shared.runner import Script

DEFAULT_TIMEOUT_S = 5.0
LAZY_S = 0.005  # how long a lazy command (a settlement) may wait to share a write
_PLAIN = (Connection, UnixDomainSocketConnection)
_KNOWN = {
    "host", "port", "path", "db", "username", "password", "socket_timeout",
    "socket_connect_timeout", "decode_responses", "encoding", "encoding_errors",
    "retry_on_timeout", "health_check_interval", "socket_keepalive", "max_connections",
}  # fmt: skip


def bulk(part: bytes | str | int) -> bytes:
    """One RESP bulk string."""
    b = part if isinstance(part, bytes) else str(part).encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def pack(*parts: bytes | str | int) -> bytes:
    """One RESP command (an array of bulk strings)."""
    return b"".join([b"*%d\r\n" % len(parts), *map(bulk, parts)])


class BulkCache:
    """Encoded key names, script hashes and numbers (limits), which repeat on every request
    with the same scopes: encoding the ~20 parts of a script call was a third of this client's
    CPU per request. Other strings (request ids) are encoded each time. Bounded: emptied
    when full, as names of expired windows or one-off numbers pile up."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._bulks: dict[str | int, bytes] = {}

    def __call__(self, part: str | int) -> bytes:
        b = self._bulks.get(part)
        if b is None:
            if len(self._bulks) >= self.limit:
                self._bulks.clear()
            b = self._bulks[part] = bulk(part)
        return b

    def arg(self, part: str | int) -> bytes:
        return self(part) if part.__class__ is int else bulk(part)

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[int | str]) -> bytes:
        """EVALSHA sha len(keys) *keys *args, the same bytes as `pack` makes."""
        return b"".join(
            [
                b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args)),
                self(sha),
                self(len(keys)),
                *map(self, keys),
                *map(self.arg, args),
            ]
        )


class _Conn(asyncio.Protocol):
    """One connection: commands queued for the next write, and the callers waiting for their
    replies in order, each with its deadline.

    One watchdog timer covers every deadline: replies come in order, so only the oldest caller
    still waiting can be the first to time out (a timer per call cost each call as much as
    encoding it). A caller that times out gets TimeoutError and the connection is aborted: the
    replies behind it can no longer be trusted, and the callers behind it fail at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()  # (caller, deadline)
        self.watchdog: asyncio.TimerHandle | None = None
        self.transport: Any = None  # asyncio's or uvloop's transport (not a subclass)
        self.out: list[bytes] = []
        self.flush_at: asyncio.Handle | None = None
        self.flush_soon = False

    def expect(self, f: asyncio.Future[Any]) -> None:
        """`f` gets the reply to the next command sent, or TimeoutError after `timeout_s`."""
        self.waiting.append((f, self.loop.time() + self.timeout_s))
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout_s, self._watch)

    def _watch(self) -> None:
        self.watchdog = None
        for f, deadline in self.waiting:
            if f.done():
                continue  # failed or cancelled already; its reply is still due
            if deadline > self.loop.time():
                self.watchdog = self.loop.call_at(deadline, self._watch)
                return
            f.set_exception(TimeoutError(f"redis did not answer in {self.timeout_s:g}s"))
            if self.transport is not None:
                self.transport.abort()  # replies behind it can no longer be trusted
            return

    def send(self, command: bytes, lazy: bool) -> None:
        """Queue a command: sent with the others of this loop iteration in one write, or,
        `lazy`, with the next eager write but within `LAZY_S`."""
        self.out.append(command)
        if lazy:
            if self.flush_at is None:
                self.flush_at = self.loop.call_later(LAZY_S, self.flush)
        elif not self.flush_soon:
            if self.flush_at is not None:
                self.flush_at.cancel()
            self.flush_soon = True
            self.flush_at = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_at, self.flush_soon = None, False
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:
                continue  # a reply for a call that was failed already
            f = self.waiting.popleft()[0]
            if f.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                f.set_exception(ResponseError(str(reply)))
            else:
                f.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            f = self.waiting.popleft()[0]
            if not f.done():
                f.set_exception(ConnectionError(f"redis connection lost: {exc or 'closed'}"))


class RedisWire:
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.host = kwargs.get("host", "localhost")
        self.port = int(kwargs.get("port", 6379))
        self.path: str | None = kwargs.get("path")
        self.db = int(kwargs.get("db") or 0)
        self.username: str | None = kwargs.get("username")
        self.password: str | None = kwargs.get("password")
        self.timeout_s = float(kwargs.get("socket_timeout") or DEFAULT_TIMEOUT_S)
        self.connect_timeout_s = float(kwargs.get("socket_connect_timeout") or self.timeout_s)
        self.bulks = BulkCache()
        self._conn: _Conn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Future[_Conn] | None = None

    @classmethod
    def for_client(cls, client: aioredis.Redis) -> RedisWire | None:
        """A wire to where `client` connects, or None if its connection needs redis-py."""
        pool = client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        if pool.connection_class not in _PLAIN or set(kwargs) - _KNOWN:
            return None
        return cls(kwargs)

    async def evalsha(
        self,
        sha: str,
        script: str,
        keys: Sequence[str],
        args: Sequence[int | str],
        lazy: bool = False,
    ) -> Any:
        """EVALSHA, loading the script first if this Redis does not know it yet."""
        command = self.bulks.evalsha(sha, keys, args)
        try:
            return await self.call(command, lazy)
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        await self.call(pack(b"SCRIPT", b"LOAD", script))
        return await self.call(command)

    def submit(
        self, sha: str, keys: Sequence[str], args: Sequence[int | str]
    ) -> asyncio.Future[Any] | None:
        """EVALSHA queued now, so it reaches Redis before any command sent after it (e.g.
        settlements that an admission must see), or None if the connection is not open yet
        (use `evalsha`). Its reply may be a NOSCRIPT ResponseError."""
        conn = self._conn
        if conn is None or conn.transport is None:
            return None
        loop = conn.loop
        if self._loop is not loop or asyncio.get_running_loop() is not loop:
            return None
        f: asyncio.Future[Any] = loop.create_future()
        conn.expect(f)
        conn.send(self.bulks.evalsha(sha, keys, args), lazy=False)
        return f

    async def call(self, command: bytes, lazy: bool = False) -> Any:
        loop = asyncio.get_running_loop()  # a getpid() syscall each on Python 3.11: once
        conn = self._conn
        if conn is None or conn.transport is None or self._loop is not loop:
            conn = await self._open()
            if conn.transport is None:
                raise ConnectionError("redis connection lost")
        f: asyncio.Future[Any] = loop.create_future()
        conn.expect(f)
        conn.send(command, lazy)
        return await f

    async def _open(self) -> _Conn:
        if self._opening is not None and self._loop is asyncio.get_running_loop():
            return await asyncio.shield(self._opening)
        loop = self._loop = asyncio.get_running_loop()
        self._opening = opening = loop.create_future()
        try:
            conn = await asyncio.wait_for(self._connect(loop), self.connect_timeout_s)
        except BaseException as e:
            opening.set_exception(e if isinstance(e, Exception) else ConnectionError(str(e)))
            opening.exception()  # retrieved: no "never retrieved" warning if nobody waits
            self._opening = None
            raise
        self._conn = conn
        opening.set_result(conn)
        self._opening = None
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Conn:
        if self.path is not None:
            _, conn = await loop.create_unix_connection(
                lambda: _Conn(loop, self.timeout_s), self.path
            )
        else:
            _, conn = await loop.create_connection(
                lambda: _Conn(loop, self.timeout_s), self.host, self.port
            )
        hello: list[bytes] = []
        if self.password is not None:
            user = [self.username] if self.username else []
            hello.append(pack(b"AUTH", *user, self.password))
        if self.db:
            hello.append(pack(b"SELECT", self.db))
        if hello:
            waits = [loop.create_future() for _ in hello]
            for w in waits:
                conn.expect(w)
            if conn.transport is None:
                raise ConnectionError("redis connection lost")
            conn.transport.write(b"".join(hello))
            try:
                await asyncio.gather(*waits)
            except BaseException:
                if conn.transport is not None:
                    conn.transport.abort()
                raise
        return conn

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                conn.flush()  # close() still sends what is buffered
                conn.transport.close()


class WireRunner:
    """The `ScriptRunner` (runner.py) over one `RedisWire`: ordered (`submit` queues at once)."""

    def __init__(self, wire: RedisWire) -> None:
        self.wire = wire

    @classmethod
    def for_client(cls, client: aioredis.Redis) -> WireRunner | None:
        wire = RedisWire.for_client(client)
        return None if wire is None else cls(wire)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        return await self.wire.evalsha(script.sha, script.text, keys, args)

    def submit(
        self, script: Script, keys: Sequence[str], args: Sequence[int | str]
    ) -> Awaitable[Any] | None:
        sent = self.wire.submit(script.sha, keys, args)
        return None if sent is None else self._answer(sent, script, keys, args)

    async def _answer(
        self,
        sent: asyncio.Future[Any],
        script: Script,
        keys: Sequence[str],
        args: Sequence[int | str],
    ) -> Any:
        try:
            return await sent
        except ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        return await self.run(script, keys, args)  # loads it, then sends it again

    async def aclose(self) -> None:
        await self.wire.aclose()
