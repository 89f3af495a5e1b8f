"""The OpenAI front doors: /v1/chat/completions, /v1/completions, /v1/embeddings.

Thin by design: parse JSON (a clear 400 on bad input), hand the body and its raw bytes to the
gateway, write the answer. Validation, routing and the engine logic live behind the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from slipstream.gateway import GatewayError
from slipstream.providers.base import Endpoint
from slipstream.server.body import read_json, stream_flag
from slipstream.server.disconnect import unless_disconnected
from slipstream.server.headers import OWN_HEADERS
from slipstream.server.replies import error_reply, json_reply, sse_reply
from slipstream.server.state import get_state


def openai_route(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    streams = endpoint is not Endpoint.EMBEDDINGS

    async def route(request: Request) -> Response:
        t0 = time.perf_counter()
        body, raw = await read_json(request)
        stream = stream_flag(body) if streams else False
        gateway = get_state(request).gateway
        server_s = time.perf_counter() - t0
        request.scope[OWN_HEADERS] = True  # every reply below sets x-request-id and overhead
        try:
            if stream:
                opened = gateway.handle_stream(endpoint, body, raw, request.headers)
                return sse_reply(await unless_disconnected(request, opened), server_s)
            call = gateway.handle(endpoint, body, raw, request.headers, after_reply=True)
            return json_reply(await unless_disconnected(request, call), server_s)
        except GatewayError as error:
            return error_reply(error, server_s)

    route.__name__ = endpoint.name.lower()
    return route
