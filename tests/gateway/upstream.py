"""A minimal OpenAI-compatible HTTP upstream (real sockets, real SSE framing) run in a thread.

The upstream model name picks a behaviour: "fail-500", "fail-429" (Retry-After: 0) or, by
default, an answer naming the upstream ("hello from <tag>").
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(tag: str, seen: list[dict[str, Any]]) -> Starlette:
    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        seen.append({"body": body, "headers": dict(request.headers)})
        model = body["model"]
        if model == "fail-500":
            return JSONResponse({"error": {"message": "internal", "type": "server_error"}}, 500)
        if model == "fail-429":
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}}, 429, {"retry-after": "0"}
            )
        text = f"hello from {tag}"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
            )  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            for word in text.split(" "):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                         "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}  # fmt: skip
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                await asyncio.sleep(0)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


class Upstream:
    def __init__(self, tag: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self.port = free_port()
        config = uvicorn.Config(
            make_app(tag, self.seen), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Upstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
