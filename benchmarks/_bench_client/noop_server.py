"""The no-op streaming OpenAI server that records when it wrote each chunk."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import time
import urllib.request
from typing import Any


def _serve(sock: socket.socket, itl_ms: float) -> None:
    """The no-op server's process: one uvloop, httptools parsing, chunks written at once."""
    import httptools
    import uvloop

    log: dict[str, dict[str, Any]] = {}
    counter = [0]

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def event(text: str) -> bytes:
        obj = {
            "id": "x",
            "object": "chat.completion.chunk",
            "model": "noop",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
        return chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    class Proto(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.url, self.body, self.rid = b"", b"", ""
            self.tr: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.tr = transport  # type: ignore[assignment]
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.tr.close()  # type: ignore[union-attr]

        def on_message_begin(self) -> None:
            self.url, self.body, self.rid = b"", b"", ""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() == b"x-request-id":
                self.rid = value.decode()

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            arrival_m, arrival_w = time.monotonic(), time.time()
            tr = self.tr
            assert tr is not None
            if self.url.startswith(b"/log"):
                body = json.dumps(log).encode()
                log.clear()
                tr.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                return
            if self.url.endswith(b"/models"):
                body = b'{"object":"list","data":[{"id":"noop","object":"model"}]}'
                tr.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                return
            counter[0] += 1
            sid = f"s{counter[0]}"
            req = json.loads(self.body or b"{}")
            n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 8)
            entry = {
                "rid": self.rid,
                "arrival_m": arrival_m,
                "arrival_w": arrival_w,
                "writes_m": [],
                "writes_w": [],
                "n": n,
            }
            log[sid] = entry
            asyncio.get_running_loop().create_task(self.stream(tr, sid, n, entry))

        async def stream(self, tr: asyncio.Transport, sid: str, n: int, e: dict) -> None:
            tr.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for i in range(n):
                if i and itl_ms:
                    await asyncio.sleep(itl_ms / 1000)
                text = f" {sid}" if i == 0 else " x"
                e["writes_m"].append(time.monotonic())
                e["writes_w"].append(time.time())
                tr.write(event(text))
            usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8}
            tail = {
                "id": "x",
                "object": "chat.completion.chunk",
                "model": "noop",
                "choices": [],
                "usage": usage,
            }
            tr.write(
                chunk(b"data: " + json.dumps(tail).encode() + b"\n\n")
                + chunk(b"data: [DONE]\n\n")
                + b"0\r\n\r\n"
            )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, sock=sock, backlog=4096)
        await server.serve_forever()

    uvloop.run(main())


class NoopServer:
    """The no-op server in a child process; ``log()`` fetches and clears its write log."""

    def __init__(self, itl_ms: float = 0.0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = mp.get_context("fork").Process(
            target=_serve, args=(self.sock, itl_ms), daemon=True
        )

    def __enter__(self) -> NoopServer:
        self.proc.start()
        for _ in range(100):
            try:
                self.log()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("no-op server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.sock.close()

    def log(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/log", timeout=30) as r:
            return json.loads(r.read())


# --------------------------------------------------------------------------- measurements
