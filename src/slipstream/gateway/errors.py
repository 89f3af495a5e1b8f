"""Final gateway errors, shaped as OpenAI error bodies with a faithful HTTP status."""

from __future__ import annotations

from typing import Any

from slipstream.providers.base import ErrorKind, ProviderError

_TYPES: dict[ErrorKind, tuple[str, str | None]] = {
    ErrorKind.BAD_REQUEST: ("invalid_request_error", None),
    ErrorKind.CONTEXT_WINDOW: ("invalid_request_error", "context_length_exceeded"),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    ErrorKind.RATE_LIMITED: ("rate_limit_error", "rate_limit_exceeded"),
    ErrorKind.AUTH: ("api_error", "upstream_authentication_failed"),
    ErrorKind.TIMEOUT: ("api_error", "timeout"),
    ErrorKind.CONNECTION: ("api_error", "upstream_unreachable"),
    ErrorKind.SERVER: ("api_error", "upstream_error"),
    ErrorKind.MID_STREAM: ("api_error", "stream_interrupted"),
}


def error_payload(error: ProviderError, message: str) -> dict[str, Any]:
    """The `{"error": {...}}` body the OpenAI SDKs parse (also used as the final SSE event)."""
    type_, code = _TYPES.get(error.kind, ("api_error", None))
    param = None
    upstream = error.upstream_body
    if isinstance(upstream, dict) and isinstance(upstream.get("error"), dict):
        # An OpenAI-shaped upstream (the local engine, vLLM...) said which field and why.
        detail = upstream["error"]
        param = detail.get("param") if isinstance(detail.get("param"), str) else None
        if isinstance(detail.get("code"), str):
            code = detail["code"]
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class GatewayError(Exception):
    """A request failed for good; the server answers with `status`, `body()` and `headers()`."""

    def __init__(self, error: ProviderError, message: str, request_id: str, overhead_ms: float):
        super().__init__(message)
        self.error = error
        self.message = message  # redacted
        self.request_id = request_id
        self.overhead_ms = overhead_ms

    @property
    def status(self) -> int:
        return self.error.status

    @property
    def kind(self) -> ErrorKind:
        return self.error.kind

    def body(self) -> dict[str, Any]:
        return error_payload(self.error, self.message)

    def headers(self) -> dict[str, str]:
        h = {"x-request-id": self.request_id, "x-slipstream-overhead-ms": f"{self.overhead_ms:.3f}"}
        if self.error.retry_after is not None:
            h["retry-after"] = str(max(0, round(self.error.retry_after)))
        # Stages may attach headers to their errors (e.g. x-ratelimit-* on a 429).
        h.update(getattr(self.error, "headers", None) or {})
        return h
