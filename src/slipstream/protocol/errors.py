"""Every error a client can see: one hierarchy, one body shape, one renderer.

Clients written against OpenAI (the official SDKs included) read
`{"error": {"message", "type", "param", "code"}}` plus an HTTP status, so every family below
renders to exactly that through `render`. The families, who raises them, and what the client
gets:

    family          raised by                          status           type / code
    --------------  ---------------------------------  ---------------  -------------------------
    APIError        the server, for a request it       400 (422, 404,   invalid_request_error;
                    cannot parse or validate           405, 413...)     code names the problem
    Refusal         a gateway stage answering early    401, 403, 404,   by status (401
                    (auth, limits, budgets, route,     413, 429...      authentication_error, 429
                    a size cap...); no provider is                      rate_limit_error...); the
                    called                                              stage's own code
    ProviderError   a provider adapter, for one        the upstream's   by `kind` (table below);
                    failed attempt (the gateway        (or 502/503/     an OpenAI-shaped upstream
                    retries or falls back on it)       504)             body's code and param win
    GatewayError    the gateway, once a request        the cause's      the cause's, with the
                    failed for good: it wraps the                       message redacted
                    final Refusal or ProviderError
                    with the request id and overhead

The engine's own exceptions (`RequestRejectedError`, `EngineDeadError`, `RequestTooLongError`)
never reach a client as such: the local provider turns them into `ProviderError`s
(providers/local/errors.py), as every adapter does with its upstream's failures.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError


class SlipstreamError(Exception):
    """What every family provides; `render` reads only this."""

    status: int
    message: str

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def response_headers(self) -> dict[str, str]:
        return {}


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def render(error: SlipstreamError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The HTTP status, OpenAI error body and headers of any error of ours."""
    return error.status, error.body(), error.response_headers()


# -- the client's request ------------------------------------------------------------------


class APIError(SlipstreamError):
    """The request is wrong (or the server cannot take it): a status and an OpenAI body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def status(self) -> int:  # type: ignore[override]
        return self.status_code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)

    def response_headers(self) -> dict[str, str]:
        return self.headers


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_validation_error(exc: ValidationError) -> APIError:
    """A 400 naming the first offending field, what was wrong, and the value sent."""
    first = exc.errors(include_url=False)[0]
    loc = [str(p) for p in first.get("loc", ()) if not str(p).startswith("function-")]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if "input" in first and first.get("type") not in ("missing", "json_invalid"):
        shown = repr(first["input"])
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = f"{message} (got {shown})"
    if param:
        message = f"Invalid value for '{param}': {message}"
    return APIError(400, message, param=param, code="invalid_value")


# -- a stage's early answer ----------------------------------------------------------------

_REFUSAL_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


class Refusal(APIError):
    """A stage answers the request itself (Bifrost's short-circuit): raised or returned by a
    `pre` (or raised by `on_chunk` to end a stream). No provider is called and nothing is
    invented about one. `retry_after` (seconds) becomes a `Retry-After` header."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        kind = _REFUSAL_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        super().__init__(status, message, type=kind, param=param, code=code, headers=headers)
        self.retry_after = retry_after


# -- one failed attempt at an upstream -----------------------------------------------------


class ErrorKind(enum.Enum):
    CONNECTION = "connection"  # refused / reset / DNS: retryable, fall back
    TIMEOUT = "timeout"  # connect, first-token or total timeout: retryable, fall back
    RATE_LIMITED = "rate_limited"  # 429: honour retry_after, fall back
    SERVER = "server"  # 5xx: retryable, fall back
    CONTEXT_WINDOW = "context_window"  # prompt too long: fall back to a larger-context model
    BAD_REQUEST = "bad_request"  # 400/422: the client's fault, never retried
    AUTH = "auth"  # 401/403 from upstream: a configuration problem, fall back
    NOT_FOUND = "not_found"  # 404 (e.g. unknown upstream model)
    MID_STREAM = "mid_stream"  # the stream broke after bytes reached the client


_KIND_TYPES: dict[ErrorKind, tuple[str, str | None]] = {
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


@dataclass
class ProviderError(SlipstreamError):
    """An adapter's classified failure: the gateway decides (retry, fall back, or answer)."""

    kind: ErrorKind
    status: int  # the HTTP status to show the client if this error is final
    message: str  # safe to show: never contains credentials
    retry_after: float | None = None  # seconds, from the upstream's Retry-After
    upstream_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind.value} ({self.status}): {self.message}"

    @property
    def retryable(self) -> bool:
        return self.kind in (
            ErrorKind.CONNECTION,
            ErrorKind.TIMEOUT,
            ErrorKind.RATE_LIMITED,
            ErrorKind.SERVER,
        )

    def body(self) -> dict[str, Any]:
        return self.body_with(self.message)

    def body_with(self, message: str) -> dict[str, Any]:
        type_, code = _KIND_TYPES.get(self.kind, ("api_error", None))
        param = None
        upstream = self.upstream_body
        if isinstance(upstream, dict) and isinstance(upstream.get("error"), dict):
            # An OpenAI-shaped upstream (the local engine, vLLM...) said which field and why.
            detail = upstream["error"]
            param = detail.get("param") if isinstance(detail.get("param"), str) else None
            if isinstance(detail.get("code"), str):
                code = detail["code"]
        return error_body(message, type=type_, param=param, code=code)

    def response_headers(self) -> dict[str, str]:
        return self.headers


# -- a request that failed for good --------------------------------------------------------


def _retry_after(error: Refusal | ProviderError) -> dict[str, str]:
    if error.retry_after is None:
        return {}
    return {"retry-after": str(max(0, round(error.retry_after)))}


class GatewayError(SlipstreamError):
    """A request failed for good (after retries and fallbacks, or refused by a stage); the
    server answers with `status`, `body()` and `headers()`."""

    def __init__(
        self,
        error: Refusal | ProviderError,
        message: str,
        request_id: str,
        overhead_ms: float,
        stage_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.message = message  # redacted
        self.request_id = request_id
        self.overhead_ms = overhead_ms
        self.stage_headers = stage_headers or {}  # what stages wrote to ctx.response_headers

    @property
    def status(self) -> int:  # type: ignore[override]
        return self.error.status

    @property
    def kind(self) -> ErrorKind | None:
        """The upstream failure's kind; None for a stage's refusal."""
        return self.error.kind if isinstance(self.error, ProviderError) else None

    @property
    def code(self) -> str | None:
        return self.body()["error"]["code"]

    def body(self) -> dict[str, Any]:
        e = self.error
        if isinstance(e, ProviderError):
            return e.body_with(self.message)
        return error_body(self.message, type=e.type, param=e.param, code=e.code)

    def headers(self) -> dict[str, str]:
        h = {"x-request-id": self.request_id, "x-slipstream-overhead-ms": f"{self.overhead_ms:.3f}"}
        h.update(self.stage_headers)
        h.update(_retry_after(self.error))
        h.update(self.error.response_headers())
        return h

    def response_headers(self) -> dict[str, str]:
        return self.headers()
