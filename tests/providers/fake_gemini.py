"""A fake Gemini API: `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`
(CRLF-framed SSE, as Google sends it), `x-goog-api-key` auth, google.rpc error bodies.
Also serves the Vertex path `projects/{p}/locations/{l}/publishers/google/models/...` with
bearer auth. Model names pick behaviours ("fail-<status>[-ctx]", "tools", "error-mid")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
USAGE = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 3,
    "totalTokenCount": 15,
    "cachedContentTokenCount": 5,
}


def error(status: int, message: str, details: list[Any] | None = None) -> Response:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
            "details": details or [],
        }
    }
    return JSONResponse(body, status_code=status)


def candidate(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        out["finishReason"] = finish
    return out


async def stream(model: str) -> AsyncIterator[bytes]:
    def sse(obj: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"

    yield sse(
        {
            "candidates": [candidate([{"text": "Hello"}])],
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        }
    )
    if model == "error-mid":
        yield sse(
            {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
        )
        return
    if model == "tools":
        call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
        yield sse({"candidates": [candidate([call], "STOP")], "usageMetadata": USAGE})
        return
    yield sse({"candidates": [candidate([{"text": " there"}], "STOP")], "usageMetadata": USAGE})


def make_app(api_key: str) -> Starlette:
    received: list[dict[str, Any]] = []

    async def handle(request: Request, vertex: bool) -> Response:
        body = orjson.loads(await request.body())
        model, _, method = request.path_params["target"].partition(":")
        received.append({"body": body, "headers": dict(request.headers), "url": str(request.url)})
        given = (
            request.headers.get("authorization", "").removeprefix("Bearer ")
            if vertex
            else request.headers.get("x-goog-api-key", "")
        )
        if given != api_key:
            return error(401 if vertex else 400, f"API key not valid: {given}")
        if model.startswith("fail-"):
            status = int(model.split("-")[1])
            if model.endswith("-ctx"):
                return error(
                    400,
                    "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                )
            details = (
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]
                if status == 429
                else None
            )
            return error(status, f"upstream says {status}", details)
        if method == "streamGenerateContent":
            if request.query_params.get("alt") != "sse":
                return error(400, "this fake speaks SSE only")
            return StreamingResponse(stream(model), media_type="text/event-stream")
        if model == "tools":
            parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]
        else:
            parts = [{"text": "Hello there"}]
        finish = "MAX_TOKENS" if model == "long" else "STOP"
        return JSONResponse(
            {
                "candidates": [candidate(parts, finish)],
                "usageMetadata": USAGE,
                "modelVersion": model,
                "responseId": "resp-1",
            }
        )

    async def gemini(request: Request) -> Response:
        return await handle(request, vertex=False)

    async def vertex(request: Request) -> Response:
        return await handle(request, vertex=True)

    app = Starlette(
        routes=[
            Route("/v1beta/models/{target}", gemini, methods=["POST"]),
            Route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{target}",
                vertex,
                methods=["POST"],
            ),
        ]
    )
    app.state.received = received
    return app
