"""A fake OpenAI-compatible upstream (chat, completions, embeddings; SSE with usage) that also
serves Azure's deployment URLs. The model name picks a behaviour: "fail-<status>[-ctx]",
"slow", "break-mid", "tools"; anything else answers "Hello there".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

WORDS = ["Hello", " there"]
USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 2,
    "total_tokens": 13,
    "prompt_tokens_details": {"cached_tokens": 4},
}
TOOL_CALL = {
    "id": "call_abc",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def error(status: int, message: str, code: str | None = None, **headers: str) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def failure(model: str) -> Response | None:
    if not model.startswith("fail-"):
        return None
    status = int(model.split("-")[1])
    if status == 429:
        if model.endswith("-date"):
            return error(
                429,
                "Rate limit reached",
                "rate_limit_exceeded",
                **{"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"},
            )
        return error(429, "Rate limit reached", "rate_limit_exceeded", **{"Retry-After": "7"})
    if model.endswith("-ctx"):
        return error(
            400,
            "This model's maximum context length is 4096 tokens. However, your messages "
            "resulted in 9000 tokens.",
            "context_length_exceeded",
        )
    return error(status, f"upstream says {status}")


def chunk(model: str, delta: dict[str, Any], finish: str | None, with_usage_key: bool) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if with_usage_key:
        body["usage"] = None  # what OpenAI sends on every chunk when include_usage is on
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def chat_stream(body: dict[str, Any]) -> AsyncIterator[bytes]:
    model = body["model"]
    usage_on = bool((body.get("stream_options") or {}).get("include_usage"))
    yield chunk(model, {"role": "assistant", "content": ""}, None, usage_on)
    if model == "tools":
        first = {**TOOL_CALL, "index": 0, "function": {"name": "get_weather", "arguments": ""}}
        yield chunk(model, {"tool_calls": [first]}, None, usage_on)
        args = {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}
        yield chunk(model, {"tool_calls": [args]}, None, usage_on)
        yield chunk(model, {}, "tool_calls", usage_on)
    else:
        for i, word in enumerate(WORDS):
            yield chunk(model, {"content": word}, None, usage_on)
            if model == "break-mid" and i == 0:
                raise RuntimeError("upstream died mid-stream")
            if model == "slow-mid" and i == 0:
                await asyncio.sleep(3)
        yield chunk(model, {}, "stop", usage_on)
    if usage_on:
        final = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": USAGE,
        }
        yield b"data: " + orjson.dumps(final) + b"\n\n"
    yield b"data: [DONE]\n\n"


def make_app(api_key: str, *, azure_version: str | None = None) -> Starlette:
    """`azure_version` set → Azure routes and the `api-key` header instead of Bearer auth."""
    received: list[dict[str, Any]] = []

    async def handle(request: Request, endpoint: str) -> Response:
        raw = await request.body()
        body = orjson.loads(raw)
        received.append({"raw": raw, "headers": dict(request.headers), "url": str(request.url)})
        if azure_version is not None:
            if request.query_params.get("api-version") != azure_version:
                return error(404, "Resource not found")
            given = request.headers.get("api-key", "")
            model = request.path_params["deployment"]
        else:
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            model = body.get("model", "")
        if given != api_key:
            return error(401, f"Incorrect API key provided: {given}.", "invalid_api_key")
        if model == "slow":
            await asyncio.sleep(3)
        failed = failure(model)
        if failed is not None:
            return failed
        body["model"] = model
        if endpoint == "embeddings":
            data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": model,
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                }
            )
        if body.get("stream"):
            return StreamingResponse(chat_stream(body), media_type="text/event-stream")
        if endpoint == "completions":
            choice: dict[str, Any] = {"index": 0, "text": "".join(WORDS), "finish_reason": "stop"}
            obj = "text_completion"
        else:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(WORDS)}
            finish = "stop"
            if model == "tools":
                message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
                finish = "tool_calls"
            choice = {"index": 0, "message": message, "finish_reason": finish}
            obj = "chat.completion"
        return JSONResponse(
            {
                "id": "x-1",
                "object": obj,
                "created": 1,
                "model": model,
                "choices": [choice],
                "usage": USAGE,
            }
        )

    def route(path: str, endpoint: str) -> Route:
        async def endpoint_fn(request: Request) -> Response:
            return await handle(request, endpoint)

        return Route(path, endpoint_fn, methods=["POST"])

    prefix = "/openai/deployments/{deployment}" if azure_version is not None else "/v1"
    app = Starlette(
        routes=[
            route(f"{prefix}/chat/completions", "chat"),
            route(f"{prefix}/completions", "completions"),
            route(f"{prefix}/embeddings", "embeddings"),
        ]
    )
    app.state.received = received
    return app
