"""The floor for a Python gateway on this machine: a pass-through proxy with nothing else.

Raw ASGI on uvicorn (uvloop, httptools), the body parsed with orjson (a gateway must read the
model name), forwarded with a pooled aiohttp keep-alive session, the answer relayed as is; for
`"stream": true` the upstream's chunks are relayed as they come. No routing, metrics, retries,
timeouts or logs. Slipstream's distance from this, on the same box in the same run, is the cost
of its features and framework; the distance of this from `direct` is what Python costs at all.

Run alone: .venv/bin/python benchmarks/_gateway/lean_proxy.py --port 9002 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class LeanProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(parts)
        body = orjson.loads(raw) if raw else {}
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        url = self.upstream + scope["path"]
        headers = {"content-type": "application/json", "authorization": "Bearer lean"}
        async with self.session.request(scope["method"], url, data=raw, headers=headers) as r:
            out = [(b"content-type", r.headers.get("content-type", "application/json").encode())]
            if not body.get("stream"):
                content = await r.read()
                out.append((b"content-length", str(len(content)).encode()))
                await send({"type": "http.response.start", "status": r.status, "headers": out})
                await send({"type": "http.response.body", "body": content})
                return
            await send({"type": "http.response.start", "status": r.status, "headers": out})
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=9002)
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9001")
    args = p.parse_args()
    uvicorn.run(
        LeanProxy(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
