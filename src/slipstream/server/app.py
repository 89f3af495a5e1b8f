"""`create_app`: the Starlette application serving the OpenAI API in front of one engine.

Routes are thin; every user-caused failure arrives here as an `APIError` (or Starlette's
404/405) and leaves as an OpenAI-shaped JSON error, so a bad request never disturbs others.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from slipstream.engine.client import AsyncEngineClient
from slipstream.obs.metrics import ServingMetrics
from slipstream.protocol.errors import APIError, error_body
from slipstream.server.routes_chat import chat_completions
from slipstream.server.routes_completions import completions
from slipstream.server.routes_info import health, list_models, metrics, openapi
from slipstream.server.state import DEFAULT_MAX_QUEUE, ServerState
from slipstream.server.streams import ClientDisconnected

log = logging.getLogger("slipstream.server")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}. See GET /openapi.json."
        body = error_body(message, code="not_found")
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        body = error_body(message, code="method_not_allowed")
    else:
        body = error_body(str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _disconnected(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody is listening; the engine work was aborted


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body(f"Internal server error: {type(exc).__name__}", type="server_error")
    return JSONResponse(body, status_code=500)


def create_app(
    client: AsyncEngineClient,
    served_model_name: str,
    *,
    max_queue: int = DEFAULT_MAX_QUEUE,
    metrics_registry: ServingMetrics | None = None,
) -> Starlette:
    """The API app for a started `client`. The caller owns the client's lifecycle.

    `metrics_registry` should be the observer given to the client, so request latencies land
    in it; without one, only engine-wide metrics are exported.
    """
    served_metrics = metrics_registry or ServingMetrics(lambda: client.stats)
    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            ClientDisconnected: _disconnected,
            Exception: _internal_error,
        },
    )
    app.state.slipstream = ServerState(
        client=client,
        served_model_name=served_model_name,
        metrics=served_metrics,
        max_queue=max_queue,
    )
    return app
