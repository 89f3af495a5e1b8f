"""A fake Anthropic Messages upstream: `/v1/messages`, `x-api-key` + `anthropic-version`
auth, typed SSE events. The model name picks a behaviour ("fail-<status>[-ctx]", "tools",
"error-first", "error-mid"); otherwise it answers "Hello there"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {
    "input_tokens": 10,
    "output_tokens": 5,
    "cache_read_input_tokens": 6,
    "cache_creation_input_tokens": 2,
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error(status: int, message: str, **headers: str) -> Response:
    body = {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
    }
    return JSONResponse(body, status_code=status, headers=headers)


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


async def events(model: str) -> AsyncIterator[bytes]:
    if model == "error-first":
        yield event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
        return
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 1,
            "cache_read_input_tokens": 6,
            "cache_creation_input_tokens": 2,
        },
    }
    yield event("message_start", {"message": message})
    yield event("ping", {})
    if model == "error-mid":
        yield event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
        return
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    yield event(
        "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hello"}}
    )
    yield event(
        "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " there"}}
    )
    yield event("content_block_stop", {"index": 0})
    stop = "end_turn"
    if model == "tools":
        block = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
        yield event("content_block_start", {"index": 1, "content_block": block})
        for part in ('{"city":', ' "Paris"}'):
            delta = {"type": "input_json_delta", "partial_json": part}
            yield event("content_block_delta", {"index": 1, "delta": delta})
        yield event("content_block_stop", {"index": 1})
        stop = "tool_use"
    yield event(
        "message_delta",
        {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}},
    )
    yield event("message_stop", {})


def make_app(api_key: str) -> Starlette:
    received: list[dict[str, Any]] = []

    async def messages(request: Request) -> Response:
        body = orjson.loads(await request.body())
        received.append({"body": body, "headers": dict(request.headers)})
        given = request.headers.get("x-api-key", "")
        if given != api_key:
            return error(401, f"invalid x-api-key: {given}")
        if request.headers.get("anthropic-version") != "2023-06-01":
            return error(400, "anthropic-version header is required")
        model = body["model"]
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            if model.endswith("-ctx"):
                return error(400, "prompt is too long: 210000 tokens > 200000 maximum")
            return error(
                status, f"upstream says {status}", **({"retry-after": "3"} if status == 429 else {})
            )
        if body.get("stream"):
            return StreamingResponse(events(model), media_type="text/event-stream")
        content: list[dict[str, Any]] = [{"type": "text", "text": "Hello there"}]
        stop = "end_turn"
        if model == "tools":
            content.append(
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            )
            stop = "tool_use"
        if model == "long":
            stop = "max_tokens"
        return JSONResponse(
            {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": USAGE,
            }
        )

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    app.state.received = received
    return app
