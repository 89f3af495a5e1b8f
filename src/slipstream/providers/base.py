"""The contract between the gateway pipeline and every provider adapter.

The gateway's lingua franca is the OpenAI wire format: a request is an OpenAI-shaped JSON body
(chat completions, completions or embeddings), a response is an OpenAI-shaped JSON body, and a
stream is a sequence of OpenAI `chat.completion.chunk` / `text_completion` objects. Adapters
translate to and from their upstream's own format (Anthropic Messages, Bedrock Converse,
Gemini generateContent...). An OpenAI-compatible upstream may pass raw bytes through untouched.

Failures are values: an adapter raises `ProviderError` (protocol/errors.py, re-exported here)
with a classified `kind`, and the gateway decides (retry, fall back, or answer with `status`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from slipstream.protocol.errors import ErrorKind, ProviderError


class Endpoint(enum.Enum):
    CHAT = "chat/completions"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 5.0
    first_token_s: float = 60.0  # time to response headers / first stream event
    total_s: float = 600.0


@dataclass
class ProviderRequest:
    endpoint: Endpoint
    body: dict[str, Any]  # OpenAI-shaped; "model" already rewritten to the upstream model name
    stream: bool
    request_id: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    # The client's original body bytes, for pass-through when nothing needed changing.
    raw_body: bytes | None = None
    headers: dict[str, str] = field(
        default_factory=dict
    )  # extra headers to forward (x-request-id...)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ProviderResponse:
    """A complete (non-streaming) answer, OpenAI-shaped."""

    body: dict[str, Any]
    status: int = 200
    usage: Usage | None = None
    raw: bytes | None = None  # the upstream bytes when they can be passed through verbatim
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamChunk:
    """One OpenAI-shaped stream event. `raw` holds the exact SSE `data:` payload for pass-through."""

    data: dict[str, Any] | None
    raw: bytes | None = None
    usage: Usage | None = None  # set on the chunk that carried usage


class Provider(Protocol):
    """One configured upstream deployment. Instances are long-lived and hold a connection pool."""

    name: str  # the provider family, e.g. "openai", "anthropic"

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Non-streaming call. Raises ProviderError."""
        ...

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        """Streaming call. Raises ProviderError before the first chunk for errors that happen
        before any byte arrived (so the gateway can fall back transparently); an error after the
        first chunk is raised as ProviderError(kind=MID_STREAM)."""
        ...

    async def aclose(self) -> None: ...


__all__ = [
    "Endpoint",
    "ErrorKind",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "ProviderResponse",
    "StreamChunk",
    "Timeouts",
    "Usage",
]
