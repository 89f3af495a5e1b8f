"""Running engine requests for a route: fan-out over `n` choices, collection, disconnects.

Every engine iterator is closed in a `finally`, so a cancelled route (client gone) aborts
its engine requests at once instead of letting them run to max_tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from slipstream.engine.client import (
    AsyncEngineClient,
    EngineDeadError,
    GenerationDelta,
    GenerationRequest,
    LogprobEntry,
    RequestRejectedError,
)
from slipstream.protocol.errors import APIError

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The HTTP client went away before the response was ready."""


def engine_error(exc: BaseException) -> APIError | None:
    """The API error for an engine-side failure, or None if `exc` is not one."""
    if isinstance(exc, RequestRejectedError):
        return APIError(400, str(exc), code="invalid_request")
    if isinstance(exc, EngineDeadError):
        return APIError(
            503,
            f"The inference engine is unavailable: {exc}",
            type="server_error",
            code="engine_unavailable",
        )
    return None


@dataclass
class Collected:
    """One choice, generated to the end."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[LogprobEntry] = field(default_factory=list)
    finish_reason: str | None = None
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_completion_tokens: int = 0


async def merge(
    client: AsyncEngineClient, requests: list[GenerationRequest]
) -> AsyncIterator[tuple[int, GenerationDelta]]:
    """Deltas of all `requests` as (choice index, delta), in arrival order."""
    if len(requests) == 1:
        async with contextlib.aclosing(client.generate(requests[0])) as gen:
            async for delta in gen:
                yield 0, delta
        return
    queue: asyncio.Queue[tuple[int, GenerationDelta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, request: GenerationRequest) -> None:
        try:
            async with contextlib.aclosing(client.generate(request)) as gen:
                async for delta in gen:
                    queue.put_nowait((index, delta))
        except Exception as exc:
            queue.put_nowait((index, exc))
        finally:
            queue.put_nowait((index, None))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect_all(
    client: AsyncEngineClient, requests: list[GenerationRequest]
) -> list[Collected]:
    results = [Collected() for _ in requests]
    async with contextlib.aclosing(merge(client, requests)) as deltas:
        async for index, delta in deltas:
            out = results[index]
            out.text += delta.text
            out.token_ids.extend(delta.token_ids)
            if delta.logprobs:
                out.logprobs.extend(delta.logprobs)
            out.finish_reason = delta.finish_reason or out.finish_reason
            out.num_prompt_tokens = delta.num_prompt_tokens
            out.num_cached_tokens = delta.num_cached_tokens
            out.num_completion_tokens = delta.num_completion_tokens
    return results


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so aborting its engine requests) if the client leaves."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if task.cancelled() or not task.done():
        await asyncio.gather(task, return_exceptions=True)
        raise ClientDisconnected()
    return task.result()
