"""Connect, first-token and total timeouts enforced around one provider call.

The connect timeout travels to the adapter in `ProviderRequest.timeouts` (only it can tell a
connect from a read); first-token and total are enforced here, so they hold whatever the
adapter does. First token = the response for a plain call, the first StreamChunk for a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from slipstream.providers.base import (
    ErrorKind,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
)


def _timeout_error(what: str, seconds: float) -> ProviderError:
    return ProviderError(ErrorKind.TIMEOUT, 504, f"upstream {what} timeout after {seconds:g}s")


async def complete_within(provider: Provider, request: ProviderRequest) -> ProviderResponse:
    t = request.timeouts
    limit = min(t.first_token_s, t.total_s)
    try:
        async with asyncio.timeout(limit):
            return await provider.complete(request)
    except TimeoutError:
        raise _timeout_error("first-token" if limit < t.total_s else "total", limit) from None


@dataclass(eq=False)
class OpenedStream:
    """A stream whose first chunk has arrived; `rest` yields the others under the total timeout."""

    first: StreamChunk | None  # None: the upstream ended the stream without any chunk
    rest: AsyncIterator[StreamChunk]


async def open_stream_within(provider: Provider, request: ProviderRequest) -> OpenedStream:
    t = request.timeouts
    deadline = time.monotonic() + t.total_s
    it = aiter(provider.stream(request))
    limit = min(t.first_token_s, t.total_s)
    try:
        async with asyncio.timeout(limit):
            first = await anext(it)
    except StopAsyncIteration:
        return OpenedStream(None, _empty())
    except TimeoutError:
        await _close(it)
        raise _timeout_error("first-token" if limit < t.total_s else "total", limit) from None
    except BaseException:
        await _close(it)
        raise
    return OpenedStream(first, _rest(it, deadline, t.total_s))


async def _rest(
    it: AsyncIterator[StreamChunk], deadline: float, total_s: float
) -> AsyncIterator[StreamChunk]:
    loop_deadline = asyncio.get_running_loop().time() + (deadline - time.monotonic())
    try:
        while True:
            try:
                async with asyncio.timeout_at(loop_deadline):
                    chunk = await anext(it)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _timeout_error("total", total_s) from None
            yield chunk
    finally:
        await _close(it)


async def _empty() -> AsyncIterator[StreamChunk]:
    return
    yield  # pragma: no cover - makes this an async generator


async def _close(it: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        # closing a broken stream must not mask the original error
        with contextlib.suppress(Exception):
            await aclose()
