"""A minimal OpenAI-compatible upstream that answers at once, to measure gateways against.

Raw ASGI on uvicorn with uvloop and httptools: no framework, responses built once at start-up,
so nearly all the time a request spends beyond "direct" is the gateway's. It speaks the real
wire format: `POST .../chat/completions` answers a chat.completion JSON with `usage`, or, when
the body says `"stream": true`, an SSE stream of chat.completion.chunk events (role, a few
one-word content chunks, the finish chunk, a usage chunk when `stream_options.include_usage`,
then `data: [DONE]`). `GET .../models` lists the one model. Anything else is a 404.

Run alone: .venv/bin/python benchmarks/_gateway/upstream.py --port 9001
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

MODEL = "upstream-model"
WORDS = ("The", " capital", " of", " France", " is", " Paris", ".")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)}


def completion_body() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(),
        }
    )


def stream_events(include_usage: bool) -> list[bytes]:
    """The SSE events of one streamed answer, each a complete `data: ...\\n\\n` frame."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> bytes:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": choices,
        }
        if usage:
            body["usage"] = usage
        return b"data: " + orjson.dumps(body) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": w}, None) for w in WORDS]
    events.append(chunk({}, "stop"))
    if include_usage:
        events.append(chunk({}, None, _usage()))
    events.append(b"data: [DONE]\n\n")
    return events


class Upstream:
    """The ASGI app; every response body is pre-serialised."""

    def __init__(self) -> None:
        self.json = completion_body()
        self.json_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.json)).encode()),
        ]
        self.sse = {flag: stream_events(flag) for flag in (False, True)}
        self.models = orjson.dumps(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else is spoken here
            return
        path: str = scope["path"]
        if scope["method"] == "POST" and path.endswith("/chat/completions"):
            body = await _read_body(receive)
            req = orjson.loads(body) if body else {}
            if req.get("stream"):
                usage = bool((req.get("stream_options") or {}).get("include_usage"))
                await self._stream(send, self.sse[usage])
            else:
                await _respond(send, 200, self.json_headers, self.json)
        elif scope["method"] == "GET" and path.endswith("/models"):
            await _respond(send, 200, [(b"content-type", b"application/json")], self.models)
        else:
            await _respond(send, 404, [(b"content-type", b"application/json")], b'{"error":{}}')

    async def _stream(self, send: Send, events: list[bytes]) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    args = p.parse_args()
    uvicorn.run(
        Upstream(),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
