"""A minimal HTTP/1.1 streaming client built for timestamp accuracy.

Each read is stamped with ``time.perf_counter()`` the moment the event loop hands it over,
and the (already de-chunked) body bytes are kept as they are; SSE parsing, JSON decoding and
tokenizing all happen after the run. Connections are kept alive and reused. The response
parser is ``httptools`` (llhttp, in C), the same one uvicorn uses.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import urlsplit

import httptools

from slipstream.bench.record import Exchange


@dataclass(frozen=True)
class Target:
    """Where requests go: parsed once, so building a request is one bytes concatenation."""

    host: str
    port: int
    tls: bool
    base_path: str
    api_key: str | None = None

    @classmethod
    def parse(cls, url: str, api_key: str | None = None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"bad --url {url!r}: expected http(s)://HOST[:PORT]/v1")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.hostname, port, parts.scheme == "https", parts.path.rstrip("/"), api_key)

    def head(self, path: str) -> bytes:
        lines = [
            f"POST {self.base_path}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            "User-Agent: slipstream-bench",
        ]
        if self.api_key:
            lines.append(f"Authorization: Bearer {self.api_key}")
        return ("\r\n".join(lines) + "\r\n").encode()


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one exchange at a time."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.now = 0.0
        self.closed = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.now = perf_counter()
        if self.parser is None:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish("protocol", f"invalid HTTP response: {exc}")
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.now = perf_counter()
            self._finish("disconnect", f"connection closed mid-response: {exc or 'EOF'}")

    # httptools callbacks
    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is not None and self.parser is not None:
            ex.headers_at = self.now
            ex.status = self.parser.get_status_code()
            self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.pieces.append((self.now, body))

    def on_message_complete(self) -> None:
        self._finish(None, None)
        if not self.keep_alive:
            self._close()

    # ours
    def start(self, ex: Exchange, payload: bytes) -> None:
        self.exchange = ex
        self.parser = httptools.HttpResponseParser(self)
        ex.sent = perf_counter()
        self.transport.write(payload)  # type: ignore[union-attr]

    def _finish(self, error_class: str | None, message: str | None) -> None:
        ex, self.exchange, self.parser = self.exchange, None, None
        if ex is None:
            return
        ex.done_at = self.now
        if error_class is not None:
            ex.fail(error_class, message or error_class)
        if ex.done is not None and not ex.done.done():
            ex.done.set_result(None)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Idle keep-alive connections to one target; new ones are opened on demand."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.idle: list[_Connection] = []
        self.ssl = ssl.create_default_context() if target.tls else None
        self.opened = 0

    async def _acquire(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(self), self.target.host, self.target.port, ssl=self.ssl
        )
        self.opened += 1
        return conn

    async def send(self, ex: Exchange, path: str, body: bytes, timeout: float) -> None:
        """Run one exchange to completion; every failure lands in ``ex.error_class``."""
        payload = (
            self.target.head(path)
            + f"X-Request-Id: bench-{ex.index}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        loop = asyncio.get_running_loop()
        ex.done = loop.create_future()
        try:
            conn = await self._acquire()
        except (OSError, ssl.SSLError) as exc:
            ex.sent = ex.done_at = perf_counter()
            ex.fail("connect", f"cannot connect to {self.target.host}:{self.target.port}: {exc}")
            return
        conn.start(ex, payload)
        timer = loop.call_later(timeout, self._expire, conn, ex, timeout)
        await ex.done
        timer.cancel()
        if not conn.closed and conn.exchange is None:
            self.idle.append(conn)

    @staticmethod
    def _expire(conn: _Connection, ex: Exchange, timeout: float) -> None:
        """Timer callback (cheaper than a wait_for task per request)."""
        if ex.done is None or ex.done.done():
            return
        conn.exchange = None
        conn._close()
        ex.done_at = perf_counter()
        ex.fail("timeout", f"no complete response after {timeout:g} s")
        ex.done.set_result(None)

    def close(self) -> None:
        for conn in self.idle:
            conn._close()
        self.idle.clear()
