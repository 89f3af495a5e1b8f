"""The refusals the tenancy stages answer with: OpenAI-shaped, with their own code and headers."""

from __future__ import annotations

from slipstream.protocol.errors import Refusal


def unauthorized(message: str, code: str = "invalid_api_key") -> Refusal:
    return Refusal(401, code, message)


def forbidden(message: str, code: str = "model_not_allowed") -> Refusal:
    return Refusal(403, code, message)


def too_many(message: str, retry_after_s: float, headers: dict[str, str], code: str) -> Refusal:
    return Refusal(429, code, message, headers=headers, retry_after=retry_after_s)
