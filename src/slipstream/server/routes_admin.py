"""POST /admin/reload: re-read slipstream.yaml without dropping in-flight requests.

Guarded by the config's `master_key` (`Authorization: Bearer <key>`); with no master key the
route does not exist (404), so an unconfigured server exposes no admin surface.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from slipstream.protocol.errors import APIError
from slipstream.server.state import get_state


def _authorize(request: Request) -> None:
    state = get_state(request)
    key = state.gateway.config.master_key
    if key is None or state.reloader is None:
        raise APIError(
            404, f"No route for POST {request.url.path}: no master_key is configured.",
            code="not_found",
        )  # fmt: skip
    given = request.headers.get("authorization", "")
    expected = f"Bearer {key.reveal()}"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise APIError(
            401,
            "Admin calls need 'Authorization: Bearer <master_key>'.",
            type="authentication_error",
            code="invalid_api_key",
        )


async def reload_config(request: Request) -> Response:
    _authorize(request)
    reloader = get_state(request).reloader
    assert reloader is not None
    error = reloader.reload()
    if error is not None:  # the running config stays; the message names fields, not values
        raise APIError(400, str(error), code="invalid_config")
    models = [m["id"] for m in get_state(request).gateway.models()]
    return JSONResponse({"status": "reloaded", "reloads": reloader.reloads, "models": models})
