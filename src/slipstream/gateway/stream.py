"""The caller's side of a streamed answer.

By the time a `GatewayStream` exists the first chunk has arrived, so every earlier failure was
absorbed by fallback. A failure after that cannot be hidden any more: the stream ends with one
`{"error": {...}}` chunk (what the OpenAI SDKs raise on), and the request is recorded as failed.

Every chunk, the first included, passes through the chain's `on_chunk` hooks in order (a stage
may pass, change, hold back or end the stream: stage.py) and, once the upstream is done,
through their `flush` hooks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from slipstream.gateway.chain import Chain
from slipstream.gateway.context import RequestContext
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.stage import EndStream
from slipstream.gateway.timeouts import OpenedStream
from slipstream.protocol.errors import ErrorKind, ProviderError, Refusal
from slipstream.providers.base import StreamChunk


class GatewayStream:
    """Async iterator of StreamChunk plus what the server needs for its response headers."""

    def __init__(
        self,
        ctx: RequestContext,
        opened: OpenedStream,
        metrics: GatewayMetrics,
        finish: Callable[[RequestContext], Awaitable[None]],
        chain: Chain,
    ) -> None:
        self.ctx = ctx
        self._opened = opened
        self._metrics = metrics
        self._finish = finish  # runs the post stages
        self._hooks = chain.on_chunk
        self._flushes = chain.flushes
        self._started = False
        self._done = False
        self._gen = self._chunks()

    @property
    def request_id(self) -> str:
        return self.ctx.request_id

    @property
    def deployment(self) -> str | None:
        return self.ctx.deployment.name if self.ctx.deployment is not None else None

    @property
    def model(self) -> str | None:
        return self.ctx.served_model

    @property
    def overhead_ms(self) -> float:
        """Gateway time up to the first chunk."""
        return self.ctx.overhead_ms

    def headers(self) -> dict[str, str]:
        return response_headers(self.ctx)

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        self._started = True
        return self._gen

    async def aclose(self) -> None:
        """Stop early (client gone); safe to call whether or not iteration started."""
        if self._started:
            await self._gen.aclose()
        else:
            await self._end(None)

    async def _upstream(self) -> AsyncGenerator[StreamChunk, None]:
        """The provider's chunks with their usage noted; its failures as ProviderError."""
        ctx = self.ctx
        first = self._opened.first
        if first is not None:
            if first.usage is not None:
                ctx.usage = first.usage
            yield first
        try:
            async for chunk in self._opened.rest:
                if chunk.usage is not None:
                    ctx.usage = chunk.usage
                yield chunk
        except ProviderError:
            raise
        except Exception as e:  # an adapter broke its contract mid-stream
            raise ProviderError(
                ErrorKind.MID_STREAM, 502, f"stream failed ({type(e).__name__})"
            ) from None

    async def _chunks(self) -> AsyncGenerator[StreamChunk, None]:
        failed: ProviderError | Refusal | None = None
        upstream = self._upstream()
        try:
            try:
                async for chunk in upstream:
                    if not self._hooks:
                        yield chunk
                        continue
                    for out in await self._through(chunk):
                        yield out
                for flush in self._flushes:
                    for out in await flush(self.ctx):
                        yield out
            except EndStream as end:
                for out in end.chunks:
                    yield out
            except ProviderError as e:
                failed = e
                yield self._error_chunk(e)
            except Refusal as r:  # a stage ended the stream with an error
                failed = r
                yield self._refusal_chunk(r)
        finally:
            await upstream.aclose()
            await self._end(failed)

    async def _through(self, chunk: StreamChunk) -> tuple[StreamChunk, ...]:
        """One chunk through the on_chunk hooks, in chain order."""
        ctx = self.ctx
        chunks: tuple[StreamChunk, ...] = (chunk,)
        for hook in self._hooks:
            passed: list[StreamChunk] = []
            for c in chunks:
                r = await hook(ctx, c)
                if r is None:
                    continue  # held back
                if isinstance(r, StreamChunk):
                    passed.append(r)
                else:
                    passed.extend(r)
            chunks = tuple(passed)
            if not chunks:
                break
        return chunks

    def _error_chunk(self, cause: ProviderError) -> StreamChunk:
        ctx = self.ctx
        message = ctx.state.redactor(f"upstream stream interrupted: {cause.message}")
        err = ProviderError(
            ErrorKind.MID_STREAM, cause.status, message, upstream_body=cause.upstream_body
        )
        ctx.error = err
        ctx.status = err.status
        payload = err.body()
        return StreamChunk(data=payload, raw=orjson.dumps(payload))

    def _refusal_chunk(self, refusal: Refusal) -> StreamChunk:
        ctx = self.ctx
        ctx.error = refusal
        ctx.status = refusal.status
        payload = refusal.body()
        payload["error"]["message"] = ctx.state.redactor(refusal.message)
        return StreamChunk(data=payload, raw=orjson.dumps(payload))

    async def _end(self, error: ProviderError | Refusal | None) -> None:
        if self._done:
            return
        self._done = True
        ctx = self.ctx
        aclose = getattr(self._opened.rest, "aclose", None)
        if aclose is not None:  # releases the upstream connection when the caller left early
            with contextlib.suppress(Exception):
                await aclose()
        d = ctx.deployment
        if d is not None:
            d.outstanding -= 1
            model = ctx.served_model or d.model
            if isinstance(error, ProviderError):  # the upstream failed (a stage's refusal is
                self._metrics.error(model, d.name, ErrorKind.MID_STREAM.value)  # not its fault)
                if error.kind is not ErrorKind.BAD_REQUEST:
                    d.breaker.record_failure()
            else:
                upstream = time.perf_counter() - ctx.start - (ctx.overhead_s or 0.0)
                self._metrics.upstream_done(model, d.name, upstream, ctx.usage)
        await self._finish(ctx)


def response_headers(ctx: RequestContext) -> dict[str, Any]:
    h = {"x-request-id": ctx.request_id, "x-slipstream-overhead-ms": f"{ctx.overhead_ms:.3f}"}
    if ctx.deployment is not None:
        h["x-slipstream-deployment"] = ctx.deployment.name
    h.update(ctx.response_headers)
    return h
