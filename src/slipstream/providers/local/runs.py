"""Running the engine requests of one OpenAI request: fan-out over `n` choices and prompts,
merged in arrival order, or collected to the end.

Every engine iterator is closed in a `finally`, so a cancelled call (the client went away,
the gateway timed out) aborts its engine requests at once instead of running to max_tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from slipstream.engine.client import (
    AsyncEngineClient,
    GenerationDelta,
    GenerationRequest,
    LogprobEntry,
)


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
