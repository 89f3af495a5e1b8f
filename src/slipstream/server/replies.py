"""Gateway answers written to HTTP: JSON bodies (raw upstream bytes when they can pass
through), OpenAI SSE streams, and errors, each with the identity and overhead headers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from slipstream.gateway import GatewayError, GatewayResult, GatewayStream
from slipstream.protocol.errors import render
from slipstream.protocol.sse import DONE, MEDIA_TYPE

JSON = "application/json"
OVERHEAD = "x-slipstream-overhead-ms"


def with_overhead(headers: dict[str, str], gateway_ms: float, server_s: float) -> dict[str, str]:
    """The gateway's own overhead plus what the server spent parsing and writing."""
    headers[OVERHEAD] = f"{gateway_ms + server_s * 1e3:.3f}"
    return headers


class SettleAfterReply(Response):
    """An answer whose gateway bookkeeping (`GatewayResult.finish`: metrics, log line, spend
    row, limit and budget settlement) runs once the bytes are handed to the server, so the
    client does not wait for it; also when sending fails, so no concurrency slot or budget
    reservation is left behind. (Starlette's BackgroundTask is skipped when sending raises.)
    The event loop runs it before it reads the client's next request on this connection."""

    def __init__(
        self, content: bytes, status_code: int, finish: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(content, status_code=status_code, media_type=JSON)
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._finish()


def json_reply(result: GatewayResult, server_s: float) -> Response:
    t0 = time.perf_counter()
    response = result.response
    content = response.raw if response.raw is not None else orjson.dumps(response.body)
    server_s += time.perf_counter() - t0
    headers = with_overhead(result.headers(), result.overhead_ms, server_s)
    reply = (
        Response(content, status_code=response.status, media_type=JSON)
        if result.finish is None
        else SettleAfterReply(content, response.status, result.finish)
    )
    # The gateway's header names are lower case already: encode them here instead of passing
    # them through Starlette's lower-and-encode (this runs for every answer).
    reply.raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return reply


def error_reply(error: GatewayError, server_s: float) -> Response:
    status, body, headers = render(error)
    return JSONResponse(
        body, status_code=status, headers=with_overhead(headers, error.overhead_ms, server_s)
    )


async def openai_events(stream: GatewayStream) -> AsyncIterator[bytes]:
    """`data: <chunk>` per chunk, `data: [DONE]` last; the stream is closed however it ends
    (a client that leaves cancels this generator, which aborts the upstream call)."""
    try:
        async for chunk in stream:
            if chunk.raw is not None:
                yield b"data: " + chunk.raw + b"\n\n"
            elif chunk.data is not None:  # neither: a usage-only chunk for metering
                yield b"data: " + orjson.dumps(chunk.data) + b"\n\n"
        yield DONE
    finally:
        await stream.aclose()


def sse_reply(stream: GatewayStream, server_s: float) -> Response:
    headers = with_overhead(stream.headers(), stream.overhead_ms, server_s)
    return StreamingResponse(openai_events(stream), media_type=MEDIA_TYPE, headers=headers)
