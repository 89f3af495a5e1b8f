"""`create_app`: the Starlette application serving the OpenAI and Anthropic front doors in
front of one `Gateway` (which reaches the embedded engine and every remote upstream).

Routes are thin; every failure caused before the gateway arrives here as an `APIError` (or
Starlette's 404/405) and leaves as an OpenAI-shaped JSON error; gateway errors are written by
the routes themselves with the request id and overhead headers.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from slipstream.engine.client import AsyncEngineClient
from slipstream.gateway import Gateway
from slipstream.gateway.reloader import ConfigReloader
from slipstream.obs.metrics import ServingMetrics
from slipstream.protocol.errors import APIError, error_body, render
from slipstream.providers.base import Endpoint
from slipstream.server.disconnect import ClientDisconnected
from slipstream.server.headers import ResponseHeaders
from slipstream.server.routes_admin import reload_config
from slipstream.server.routes_info import health, list_models, metrics, openapi
from slipstream.server.routes_messages import messages
from slipstream.server.routes_openai import openai_route
from slipstream.server.state import ServerState

log = logging.getLogger("slipstream.server")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    status, body, headers = render(exc)
    return JSONResponse(body, status_code=status, headers=headers)


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
    gateway: Gateway,
    *,
    client: AsyncEngineClient | None = None,
    engine_metrics: ServingMetrics | None = None,
    reloader: ConfigReloader | None = None,
) -> Starlette:
    """The API app in front of `gateway`. The caller owns the gateway's and client's lifecycle.

    `client` is the embedded engine (for /health), `engine_metrics` the observer given to it
    (so engine latencies land in /metrics), `reloader` enables POST /admin/reload.
    """
    routes = [
        Route("/v1/chat/completions", openai_route(Endpoint.CHAT), methods=["POST"]),
        Route("/v1/completions", openai_route(Endpoint.COMPLETIONS), methods=["POST"]),
        Route("/v1/embeddings", openai_route(Endpoint.EMBEDDINGS), methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/admin/reload", reload_config, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(ResponseHeaders)],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            ClientDisconnected: _disconnected,
            Exception: _internal_error,
        },
    )
    app.state.slipstream = ServerState(gateway, client, engine_metrics, reloader)
    return app
