"""Classify upstream failures into `ProviderError`s, the same way for every provider.

One table maps HTTP status (and the words of a 400) to an `ErrorKind`, so the gateway's retry
and fallback rules do not depend on which adapter failed. Every message passes through
`Redactor` first: upstreams echo keys back ("Incorrect API key provided: sk-...") and
exception texts can carry URLs, so nothing secret may reach a log or a client.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from slipstream.providers.base import Endpoint, ErrorKind, ProviderError, ProviderRequest

# Words by which each provider says "the prompt does not fit the context window".
CONTEXT_WINDOW_MARKERS = (
    "context_length_exceeded",  # OpenAI / vLLM code
    "maximum context length",  # OpenAI / vLLM message
    "prompt is too long",  # Anthropic
    "exceeds the maximum number of tokens",  # Gemini
    "input is too long",  # Bedrock
    "too long",  # Bedrock ValidationException variants
    "context window",
    "too many tokens",
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


@dataclass(frozen=True)
class Redactor:
    """Replaces every configured secret (and its long-enough pieces' obvious forms) by a mark."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str | None]) -> Redactor:
        return cls(tuple(v for v in values if v and len(v) >= 4))

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, "[REDACTED]")
        return value

    def value(self, value: Any) -> Any:
        """Redact strings anywhere inside a decoded JSON value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def parse_duration(text: str) -> float | None:
    """Go-style durations as in OpenAI's x-ratelimit-reset-* ("1s", "6m0s", "250ms") or "30s"."""
    parts = _DURATION_PART.findall(text.strip())
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, `Retry-After` (seconds or HTTP date), or
    OpenAI's `x-ratelimit-reset-requests`/`-tokens`."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - time.time())
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        value = headers.get(name)
        if value:
            seconds = parse_duration(value)
            if seconds is not None:
                return seconds
    return None


def upstream_message(body: Any, text: str) -> str:
    """The human message inside the error shapes of OpenAI, Anthropic, Gemini and Bedrock."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        for key in ("message", "Message", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return text[:500]


def _error_code(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code') or ''} {error.get('type') or ''}"
    return ""


def decode_body(content: bytes) -> Any:
    try:
        return orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return None


def classify_status(status: int, message: str) -> tuple[ErrorKind, int]:
    """The kind of an upstream HTTP error and the status to show the client."""
    if status == 429:
        return ErrorKind.RATE_LIMITED, 429
    if status == 408:
        return ErrorKind.TIMEOUT, 504
    if status >= 500:
        return ErrorKind.SERVER, status
    if status in (401, 403):
        return ErrorKind.AUTH, status
    if status == 404:
        return ErrorKind.NOT_FOUND, 404
    lowered = message.lower()
    if status in (400, 413, 422) and any(m in lowered for m in CONTEXT_WINDOW_MARKERS):
        return ErrorKind.CONTEXT_WINDOW, 400
    return ErrorKind.BAD_REQUEST, status if 400 <= status < 500 else 400


def error_from_response(
    provider: str,
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    redactor: Redactor,
    *,
    retry_after: float | None = None,
    message: str | None = None,
) -> ProviderError:
    """A `ProviderError` for an upstream error response (status >= 400)."""
    body = decode_body(content)
    text = redactor.text(content.decode("utf-8", "replace"))
    msg = redactor.text(message if message is not None else upstream_message(body, text))
    kind, shown = classify_status(status, f"{msg} {_error_code(body)}")
    if retry_after is None:
        retry_after = parse_retry_after(headers)
    return ProviderError(
        kind=kind,
        status=shown,
        message=f"{provider} upstream returned {status}: {msg}",
        retry_after=retry_after,
        upstream_body=redactor.value(body) if body is not None else text[:2000],
    )


def error_from_exception(provider: str, exc: BaseException, *, mid_stream: bool) -> ProviderError:
    """Transport failures. The message names only the exception type: transport exception
    texts carry hosts and URLs, and URLs can carry keys."""
    if isinstance(exc, TimeoutError):
        kind, status, what = ErrorKind.TIMEOUT, 504, "timed out"
    else:
        kind, status, what = ErrorKind.CONNECTION, 502, "connection failed"
    if mid_stream:
        return ProviderError(
            ErrorKind.MID_STREAM, 502, f"{provider} stream broke: {what} ({type(exc).__name__})"
        )
    return ProviderError(kind, status, f"{provider} upstream {what} ({type(exc).__name__})")


def mid_stream(error: ProviderError) -> ProviderError:
    """The same failure, re-kinded because bytes already reached the client."""
    if error.kind is ErrorKind.MID_STREAM:
        return error
    return ProviderError(
        ErrorKind.MID_STREAM,
        error.status if error.status >= 500 else 502,
        error.message,
        error.retry_after,
        error.upstream_body,
    )


def unsupported(provider: str, endpoint: Endpoint) -> ProviderError:
    return ProviderError(
        ErrorKind.BAD_REQUEST, 400, f"the {provider} provider does not serve /{endpoint.value}"
    )


def untranslatable(provider: str, exc: Exception) -> ProviderError:
    return ProviderError(
        ErrorKind.BAD_REQUEST, 400, f"cannot send this request to {provider}: {exc}"
    )


def translate_chat(
    provider: str, request: ProviderRequest, translate: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The chat body in the upstream's format, or a 400 the client can act on: an endpoint
    the provider does not serve, or a request its format cannot express."""
    if request.endpoint is not Endpoint.CHAT:
        raise unsupported(provider, request.endpoint)
    try:
        return translate(request.body)
    except (ValueError, TypeError, KeyError, AttributeError, orjson.JSONDecodeError) as exc:
        raise untranslatable(provider, exc) from None
