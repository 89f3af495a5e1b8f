"""GET routes: /v1/models, /health, /metrics, /openapi.json."""

from __future__ import annotations

from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from slipstream.obs.metrics import CONTENT_TYPE
from slipstream.protocol.errors import error_body
from slipstream.server.openapi import openapi_document
from slipstream.server.state import get_state


async def list_models(request: Request) -> Response:
    """Public model names only: never deployments, upstream URLs or credentials."""
    return JSONResponse({"object": "list", "data": get_state(request).gateway.models()})


async def health(request: Request) -> Response:
    """200 while the embedded engine (if any) is alive and answering, 503 otherwise."""
    client = get_state(request).client
    reason = client.dead_reason if client is not None else None
    if reason is None:
        return JSONResponse({"status": "ok"})
    return JSONResponse(
        error_body(f"engine unavailable: {reason}", type="server_error", code="engine_unavailable"),
        status_code=503,
    )


async def metrics(request: Request) -> Response:
    """Engine metrics (when an engine runs) and the gateway's, in one exposition."""
    state = get_state(request)
    parts = [generate_latest(state.gateway.metrics.registry)]
    if state.engine_metrics is not None:
        parts.insert(0, state.engine_metrics.render())
    return Response(b"".join(parts), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())
