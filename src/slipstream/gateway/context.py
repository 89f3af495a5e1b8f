"""Everything one request carries through the pipeline, and its overhead accounting.

Overhead is wall time in the gateway minus time spent awaiting upstream providers; for a
stream it is measured up to the first chunk handed to the caller.

A stage keeps its per-request state in a typed slot: it owns a module-level
`StateKey[T]("name")` and calls `ctx.put(KEY, value)` / `ctx.get(KEY)` (a `T | None`), so
nothing is read back from an untyped dict with `getattr`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from slipstream.protocol.errors import ProviderError, Refusal
from slipstream.providers.base import Endpoint, Usage

if TYPE_CHECKING:
    from slipstream.gateway.deployment import Deployment
    from slipstream.gateway.state import GatewayState, ModelGroup

T = TypeVar("T")


class StateKey(Generic[T]):
    """The typed slot of one stage's per-request state (compared by identity: one per stage)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StateKey({self.name!r})"


@dataclass(eq=False)
class RequestContext:
    endpoint: Endpoint
    body: dict[str, Any]
    raw: bytes | None
    headers: dict[str, str]  # lower-cased names
    stream: bool
    state: GatewayState
    request_id: str = ""
    start: float = field(default_factory=time.perf_counter)
    upstream_s: float = 0.0  # time spent awaiting providers (not gateway overhead)
    group: ModelGroup | None = None  # the requested model, set by the route stage
    served_model: str | None = None  # the model that answered (differs after a fallback)
    deployment: Deployment | None = None  # the deployment that answered
    attempts: int = 0
    retries: int = 0
    fallbacks: int = 0
    ttft_s: float | None = None  # request start → first chunk / response
    usage: Usage | None = None
    error: ProviderError | Refusal | None = None
    status: int = 200
    overhead_s: float | None = None  # fixed when the response (or first chunk) is ready
    stage_s: dict[str, float] = field(default_factory=dict)  # each stage measures itself
    response_headers: dict[str, str] = field(default_factory=dict)  # written by stages
    slots: dict[StateKey[Any], Any] = field(default_factory=dict)  # per-stage typed state

    @classmethod
    def create(
        cls,
        endpoint: Endpoint,
        body: dict[str, Any],
        raw: bytes | None,
        headers: Mapping[str, str],
        stream: bool,
        state: GatewayState,
    ) -> RequestContext:
        return cls(
            endpoint=endpoint,
            body=body,
            raw=raw,
            headers={k.lower(): v for k, v in headers.items()},
            stream=stream,
            state=state,
        )

    @property
    def model(self) -> str:
        m = self.body.get("model")
        return m if isinstance(m, str) else ""

    def get(self, key: StateKey[T]) -> T | None:
        return self.slots.get(key)

    def put(self, key: StateKey[T], value: T) -> None:
        self.slots[key] = value

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start

    def mark_ready(self) -> None:
        """The answer (or first chunk) is ready for the caller: fix the overhead now."""
        if self.overhead_s is None:
            self.overhead_s = max(0.0, self.elapsed_s() - self.upstream_s)
            if self.ttft_s is None:
                self.ttft_s = self.elapsed_s()

    @property
    def overhead_ms(self) -> float:
        return (self.overhead_s or 0.0) * 1e3
