"""Local engine failures as gateway `ProviderError`s that keep OpenAI's exact error body.

The moved request logic raises `APIError` (status, message, param, code); the original body
rides along as `upstream_body`, so the gateway answers with the same param and code the
engine-only server did (`context_length_exceeded`, `invalid_value`, `queue_full`...).
"""

from __future__ import annotations

from slipstream.engine.generation import EngineDeadError, RequestRejectedError
from slipstream.protocol.errors import APIError
from slipstream.providers.base import ErrorKind, ProviderError


def from_api_error(exc: APIError) -> ProviderError:
    if exc.code == "context_length_exceeded":
        kind = ErrorKind.CONTEXT_WINDOW
    elif exc.status_code == 404:
        kind = ErrorKind.NOT_FOUND
    elif exc.status_code == 429:
        kind = ErrorKind.RATE_LIMITED
    elif exc.status_code >= 500:
        kind = ErrorKind.SERVER
    else:
        kind = ErrorKind.BAD_REQUEST
    retry = {k.lower(): v for k, v in exc.headers.items()}.get("retry-after")
    return ProviderError(
        kind,
        exc.status_code,
        exc.message,
        retry_after=float(retry) if retry is not None else None,
        upstream_body=exc.body(),
    )


def engine_error(exc: BaseException) -> ProviderError | None:
    """The error for an engine-side failure, or None if `exc` is not one."""
    if isinstance(exc, RequestRejectedError):
        return from_api_error(APIError(400, str(exc), code="invalid_request"))
    if isinstance(exc, EngineDeadError):
        return from_api_error(
            APIError(
                503,
                f"The inference engine is unavailable: {exc}",
                type="server_error",
                code="engine_unavailable",
            )
        )
    return None


def queue_full(outstanding: int, limit: int) -> ProviderError:
    """Bounded admission: 503 + Retry-After instead of an unbounded queue."""
    return from_api_error(
        APIError(
            503,
            f"The server is overloaded: {outstanding} requests are in flight and the "
            f"limit is {limit}. Retry shortly.",
            type="server_overloaded",
            code="queue_full",
            headers={"Retry-After": "1"},
        )
    )


def no_embeddings(model: str) -> ProviderError:
    return from_api_error(
        APIError(
            400,
            f"The local engine ({model}) does not support embeddings: it serves chat and text "
            "completions only. Route /v1/embeddings to a deployment of an embedding model.",
            code="unsupported_endpoint",
        )
    )
