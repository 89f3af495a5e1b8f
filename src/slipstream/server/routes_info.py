"""GET routes: /v1/models, /health, /metrics, /openapi.json."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from slipstream.obs.metrics import CONTENT_TYPE
from slipstream.protocol.errors import error_body
from slipstream.protocol.openai import ModelCard, ModelList
from slipstream.server.openapi import openapi_document
from slipstream.server.state import get_state


async def list_models(request: Request) -> Response:
    state = get_state(request)
    info = state.client.model_info
    models = ModelList(
        data=[ModelCard(id=state.served_model_name, max_model_len=info.max_model_len)]
    )
    return JSONResponse(models.model_dump(mode="json"))


async def health(request: Request) -> Response:
    """200 while the engine process is alive and answering, 503 otherwise."""
    state = get_state(request)
    reason = state.client.dead_reason
    if reason is None:
        return JSONResponse({"status": "ok"})
    return JSONResponse(
        error_body(f"engine unavailable: {reason}", type="server_error", code="engine_unavailable"),
        status_code=503,
    )


async def metrics(request: Request) -> Response:
    return Response(get_state(request).metrics.render(), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())
