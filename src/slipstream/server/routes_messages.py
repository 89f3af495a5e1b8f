"""POST /v1/messages: the Anthropic Messages front door, so Anthropic SDK users can point at
Slipstream. The body is translated to an OpenAI chat request, runs through the same gateway,
and the answer (or each stream chunk) is translated back, errors in Anthropic's shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from slipstream.gateway import GatewayError, GatewayStream
from slipstream.protocol.anthropic import error_body
from slipstream.protocol.anthropic_inbound import (
    chat_response_to_messages,
    messages_request_to_chat,
)
from slipstream.protocol.anthropic_stream import ChatStreamToMessages, encode_event, error_event
from slipstream.protocol.errors import APIError
from slipstream.protocol.sse import MEDIA_TYPE
from slipstream.providers.base import Endpoint
from slipstream.server.body import read_json
from slipstream.server.disconnect import unless_disconnected
from slipstream.server.replies import JSON, with_overhead
from slipstream.server.state import get_state


def _problem(body: dict[str, Any]) -> str | None:
    """What makes this not a Messages request (the fields Anthropic requires)."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required (a model name string)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required (a non-empty list of messages)"
    if any(not isinstance(m, dict) or m.get("role") not in ("user", "assistant") for m in messages):
        return "messages: each message needs a role of 'user' or 'assistant'"
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Field required (a positive integer)"
    if not isinstance(body.get("stream", False), bool):
        return "stream: Input should be a valid boolean"
    return None


def _anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


async def messages(request: Request) -> Response:
    t0 = time.perf_counter()
    try:
        body, _ = await read_json(request)
    except APIError as exc:
        return _anthropic_error(exc.status_code, exc.message)
    problem = _problem(body)
    if problem is not None:
        return _anthropic_error(400, problem)
    try:
        chat = messages_request_to_chat(body)
    except (AttributeError, TypeError, ValueError) as exc:
        return _anthropic_error(400, f"invalid Messages request: {exc}")
    gateway = get_state(request).gateway
    model = body["model"]
    server_s = time.perf_counter() - t0
    try:
        if body.get("stream"):
            opened = gateway.handle_stream(Endpoint.CHAT, chat, None, request.headers)
            stream = await unless_disconnected(request, opened)
            headers = with_overhead(stream.headers(), stream.overhead_ms, server_s)
            events = _events(stream, model)
            return StreamingResponse(events, media_type=MEDIA_TYPE, headers=headers)
        result = await unless_disconnected(
            request, gateway.handle(Endpoint.CHAT, chat, None, request.headers)
        )
    except GatewayError as error:
        headers = with_overhead(error.headers(), error.overhead_ms, server_s)
        return _anthropic_error(error.status, error.message, headers)
    t1 = time.perf_counter()
    content = orjson.dumps(chat_response_to_messages(result.response.body, model=model))
    headers = with_overhead(
        result.headers(), result.overhead_ms, server_s + time.perf_counter() - t1
    )
    return Response(content, media_type=JSON, headers=headers)


async def _events(stream: GatewayStream, model: str) -> AsyncIterator[bytes]:
    """OpenAI chunks → Anthropic events; a mid-stream failure ends with an `error` event."""
    translator = ChatStreamToMessages(model)
    try:
        async for chunk in stream:
            data = chunk.data
            if data is None and chunk.raw is not None:
                data = orjson.loads(chunk.raw)
            if data is None:
                continue
            if "error" in data:
                error = data["error"] or {}
                yield error_event("api_error", str(error.get("message", "stream failed")))
                return
            for event, payload in translator.feed(data):
                yield encode_event(event, payload)
        for event, payload in translator.finish():
            yield encode_event(event, payload)
    finally:
        await stream.aclose()
