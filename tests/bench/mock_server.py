"""A streaming OpenAI-compatible test server whose timing is known exactly.

Runs in its own process (its own core and event loop) and records, per request, when the
request arrived and when each chunk was written, with ``time.perf_counter()`` — the same
system-wide monotonic clock the bench client stamps with — so tests compare the client's
numbers with the server's truth under identical definitions.

Per-request timing comes from the request body's ``mock`` object (sent with bench's
``extra_body``): ``ttft_ms``, ``itl_ms`` (per token), ``chunk_tokens``, ``usage_per_chunk``,
``status`` (an HTTP error), ``malformed`` (a non-JSON event). ``stall_at``/``stall_s`` in the
server config block the whole server for ``stall_s`` seconds when request number
``stall_at`` arrives. ``capacity`` (server config) serves at most that many streams at once;
later requests wait in a FIFO queue and their timing starts when a slot frees (a server with
a known maximum throughput, for sweeps and ``--find-max``).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import time
import urllib.request
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import httptools

TOKEN = " tok"


@dataclass
class ServerState:
    defaults: dict[str, Any]
    stall_at: int | None = None
    stall_s: float = 0.0
    capacity: int | None = None
    slots: asyncio.Semaphore | None = None  # created in the server's own loop
    arrivals: int = 0
    truth: dict[str, dict[str, Any]] = field(default_factory=dict)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj: Any) -> bytes:
    return _chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")


class MockProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body = b""
        self.headers: dict[bytes, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on chunks

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[union-attr]

    def on_message_begin(self) -> None:
        self.url, self.body, self.headers = b"", b"", {}

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        arrival = perf_counter()
        if self.url.startswith(b"/truth"):
            body = json.dumps(self.state.truth).encode()
            self._plain(200, body)
            return
        self.state.arrivals += 1
        if self.state.stall_at is not None and self.state.arrivals == self.state.stall_at:
            time.sleep(self.state.stall_s)  # a real stall: the whole server stops
        req = json.loads(self.body or b"{}")
        rid = self.headers.get(b"x-request-id", b"").decode() or f"anon-{self.state.arrivals}"
        asyncio.get_running_loop().create_task(self._stream(req, rid, arrival))

    def _plain(self, status: int, body: bytes) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.transport.write(head.encode() + body)  # type: ignore[union-attr]

    async def _stream(self, req: dict[str, Any], rid: str, arrival: float) -> None:
        slots = self.state.slots
        if slots is None:
            await self._serve_one(req, rid, arrival)
            return
        async with slots:
            await self._serve_one(req, rid, perf_counter())

    async def _serve_one(self, req: dict[str, Any], rid: str, arrival: float) -> None:
        cfg = {**self.state.defaults, **req.get("mock", {})}
        if cfg.get("status", 200) != 200:
            self._plain(
                int(cfg["status"]),
                b'{"error": {"message": "mock failure", "type": "server_error"}}',
            )
            return
        tr = self.transport
        assert tr is not None
        n = int(req.get("max_tokens") or 16)
        k = max(1, int(cfg.get("chunk_tokens", 1)))
        ttft, itl = cfg.get("ttft_ms", 0.0) / 1000, cfg.get("itl_ms", 0.0) / 1000
        chat = "messages" in req
        writes: list[float] = []
        tokens: list[int] = []
        tr.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        if chat and cfg.get("role_chunk", True):
            tr.write(_event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
        if cfg.get("malformed"):
            tr.write(_chunk(b"data: {this is not json\n\n") + b"0\r\n\r\n")
            return
        sent = 0
        while sent < n:
            m = min(k, n - sent)
            due = arrival + ttft + (sent + m - 1) * itl  # when this chunk's last token exists
            delay = due - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent += m
            text = TOKEN * m
            choice = (
                {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            )
            obj: dict[str, Any] = {"choices": [choice]}
            if cfg.get("usage_per_chunk"):
                obj["usage"] = {"prompt_tokens": 5, "completion_tokens": sent}
            writes.append(perf_counter())  # stamped before the write: causality holds
            tr.write(_event(obj))
            tokens.append(m)
        if (req.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}
            tr.write(_event({"choices": [], "usage": usage}))
        tr.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        msgs = req.get("messages") or []
        self.state.truth[rid] = {
            "arrival": arrival,
            "writes": writes,
            "tokens": tokens,
            "roles": [m.get("role") for m in msgs],  # what the client sent (multi-turn tests)
            "replies": [m.get("content") for m in msgs if m.get("role") == "assistant"],
        }


def _serve(sock: socket.socket, state: ServerState, use_uvloop: bool) -> None:
    async def main() -> None:
        if state.capacity:
            state.slots = asyncio.Semaphore(state.capacity)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: MockProtocol(state), sock=sock, backlog=4096)
        await server.serve_forever()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


class MockServer:
    """Start/stop the mock server in a child process; ``url`` is its ``/v1`` base."""

    def __init__(self, use_uvloop: bool = False, **defaults: Any) -> None:
        stall_at = defaults.pop("stall_at", None)
        stall_s = defaults.pop("stall_s", 0.0)
        capacity = defaults.pop("capacity", None)
        self.state = ServerState(defaults, stall_at, stall_s, capacity)
        self.sock = _free_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        ctx = mp.get_context("fork")
        self.proc = ctx.Process(
            target=_serve, args=(self.sock, self.state, use_uvloop), daemon=True
        )

    def __enter__(self) -> MockServer:
        self.proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.sock.close()

    def truth(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/truth", timeout=10) as resp:
            return json.loads(resp.read())
