"""Refusals the tenancy stages answer with: OpenAI-shaped, with their own code and headers."""

from __future__ import annotations

from dataclasses import dataclass, field

from slipstream.providers.base import ErrorKind, ProviderError


@dataclass
class TenancyError(ProviderError):
    """A ProviderError that carries an OpenAI error `code` and response headers
    (`x-ratelimit-*`), so the gateway's error path can pass them to the client."""

    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The gateway's error body takes `code` from an OpenAI-shaped upstream body.
        if self.code is not None and self.upstream_body is None:
            self.upstream_body = {"error": {"code": self.code}}


def unauthorized(message: str, code: str = "invalid_api_key") -> TenancyError:
    return TenancyError(ErrorKind.BAD_REQUEST, 401, message, code=code)


def forbidden(message: str, code: str = "model_not_allowed") -> TenancyError:
    return TenancyError(ErrorKind.BAD_REQUEST, 403, message, code=code)


def too_many(
    message: str, retry_after_s: float, headers: dict[str, str], code: str
) -> TenancyError:
    return TenancyError(
        ErrorKind.RATE_LIMITED, 429, message, retry_after=retry_after_s, code=code, headers=headers
    )
