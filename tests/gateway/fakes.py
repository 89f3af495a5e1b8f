"""Scripted in-test providers and a driveable clock for gateway tests.

The thing under test is the gateway's routing and resilience, so the upstream is a small
object implementing the `Provider` protocol whose every call follows a script.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from slipstream.config import DeploymentConfig, parse_config
from slipstream.gateway import Gateway
from slipstream.gateway.clock import Clock
from slipstream.providers.base import (
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Usage,
)


def err(kind: ErrorKind, status: int, retry_after: float | None = None, msg: str = "boom"):
    return ProviderError(kind, status, msg, retry_after=retry_after)


@dataclass
class Step:
    """What one call does: wait `delay`, then raise `error` or answer (stream: `chunks` chunks,
    then `error_after` if set)."""

    error: ProviderError | None = None
    delay: float = 0.0
    chunks: int = 3
    error_after: ProviderError | None = None
    chunk_delay: float = 0.0
    gate: asyncio.Event | None = None  # wait for this before answering


@dataclass
class FakeProvider:
    deployment: str
    script: list[Step] = field(default_factory=list)  # consumed in order; then `default`
    default: Step = field(default_factory=Step)
    name: str = "fake"
    calls: list[ProviderRequest] = field(default_factory=list)
    closed: bool = False

    def _next(self, request: ProviderRequest) -> Step:
        self.calls.append(request)
        return self.script.pop(0) if self.script else self.default

    async def _wait(self, step: Step) -> None:
        if step.gate is not None:
            await step.gate.wait()
        if step.delay:
            await asyncio.sleep(step.delay)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        step = self._next(request)
        await self._wait(step)
        if step.error is not None:
            raise step.error
        body = {
            "id": "cmpl-1",
            "object": "chat.completion",
            "model": request.body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"from {self.deployment}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
        return ProviderResponse(body=body, usage=Usage(3, 4))

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        step = self._next(request)
        await self._wait(step)
        if step.error is not None:
            raise step.error
        for i in range(step.chunks):
            if i and step.chunk_delay:
                await asyncio.sleep(step.chunk_delay)
            yield StreamChunk(
                data={
                    "object": "chat.completion.chunk",
                    "model": request.body["model"],
                    "choices": [{"index": 0, "delta": {"content": f"{self.deployment}:{i}"}}],
                }
            )
        if step.error_after is not None:
            raise step.error_after
        yield StreamChunk(data={"choices": []}, usage=Usage(3, step.chunks))

    async def aclose(self) -> None:
        self.closed = True


class FakeClock:
    """Monotonic time that only moves when a sleep is awaited (or `advance` is called)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep)


class Fleet:
    """Fake providers by deployment name, created on demand by the gateway's factory."""

    def __init__(self, **scripts: list[Step]) -> None:
        self.providers: dict[str, FakeProvider] = {}
        self.scripts = scripts

    def factory(self, dc: DeploymentConfig) -> FakeProvider:
        p = FakeProvider(dc.name, list(self.scripts.get(dc.name, [])))
        self.providers[dc.name] = p
        return p

    def __getitem__(self, name: str) -> FakeProvider:
        return self.providers[name]

    def counts(self) -> dict[str, int]:
        return {n: len(p.calls) for n, p in self.providers.items()}


def dep(name: str, **kw: Any) -> dict[str, Any]:
    return {"provider": "local", "model": f"up-{name}", "name": name, **kw}


def make_gateway(
    models: list[dict[str, Any]],
    fleet: Fleet,
    clock: FakeClock | None = None,
    seed: int = 7,
    **top: Any,
) -> Gateway:
    import random

    config = parse_config({"models": models, **top})
    return Gateway(
        config,
        fleet.factory,
        clock=clock.clock() if clock else None,
        rng=random.Random(seed),
    )


def chat(model: str = "chat", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())
