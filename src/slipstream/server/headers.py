"""Identity and cost headers on every response: `x-request-id`, `x-slipstream-overhead-ms`.

Gateway routes set both themselves (their overhead excludes time spent upstream); this pure
ASGI middleware fills them in for every other answer (bad JSON, 404s, /health...), measured
up to the first byte. A pure ASGI wrapper costs a few microseconds, unlike BaseHTTPMiddleware.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slipstream.gateway.stages.request_id import MAX_ID_LEN

REQUEST_ID = b"x-request-id"
OVERHEAD = b"x-slipstream-overhead-ms"
# Set in the ASGI scope by routes whose answers carry both headers already (the gateway's):
# then nothing here touches the response (it ran on every request: ~1 µs per header).
OWN_HEADERS = "slipstream.own_headers"


def client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID:
            text = value.decode("latin-1")
            return text if 0 < len(text) <= MAX_ID_LEN and text.isprintable() else None
    return None


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and OWN_HEADERS not in scope:
                headers: list[Any] = list(message.get("headers", ()))
                names = {name for name, _ in headers}
                if REQUEST_ID not in names:
                    rid = client_request_id(scope["headers"]) or uuid.uuid4().hex
                    headers.append((REQUEST_ID, rid.encode("latin-1")))
                if OVERHEAD not in names:
                    ms = (time.perf_counter() - start) * 1e3
                    headers.append((OVERHEAD, f"{ms:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
