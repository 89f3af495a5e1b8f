"""Read a JSON request body: the parsed object for routing plus the raw bytes for pass-through.

No schema validation here: the provider that serves the request validates what it needs
(the local engine with pydantic, an upstream with its own rules), so the hot path parses once.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from slipstream.protocol.errors import APIError, bad_request


async def read_json(request: Request) -> tuple[dict[str, Any], bytes]:
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"We could not parse the JSON body of your request ({exc}). "
            "Send a valid JSON object with Content-Type: application/json.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise APIError(
            400,
            f"The request body must be a JSON object, not {type(data).__name__}.",
            code="invalid_json",
        )
    return data, raw


def stream_flag(body: dict[str, Any]) -> bool:
    """`stream` decides the kind of answer, so it is checked here (a clear 400, not a 500)."""
    value = body.get("stream", False)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise bad_request(
        f"Invalid value for 'stream': Input should be a valid boolean (got {value!r})",
        param="stream",
        code="invalid_value",
    )
