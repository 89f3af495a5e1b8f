"""The caller's side of a streamed answer.

By the time a `GatewayStream` exists the first chunk has arrived, so every earlier failure was
absorbed by fallback. A failure after that cannot be hidden any more: the stream ends with one
`{"error": {...}}` chunk (what the OpenAI SDKs raise on), and the request is recorded as failed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from slipstream.gateway.context import RequestContext
from slipstream.gateway.errors import error_payload
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.timeouts import OpenedStream
from slipstream.providers.base import ErrorKind, ProviderError, StreamChunk
from slipstream.tenancy.stream_usage import count_stream_chunk


class GatewayStream:
    """Async iterator of StreamChunk plus what the server needs for its response headers."""

    def __init__(
        self,
        ctx: RequestContext,
        opened: OpenedStream,
        metrics: GatewayMetrics,
        finish: Callable[[RequestContext], Awaitable[None]],
    ) -> None:
        self.ctx = ctx
        self._opened = opened
        self._metrics = metrics
        self._finish = finish  # runs the post stages
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

    async def _chunks(self) -> AsyncIterator[StreamChunk]:
        error: ProviderError | None = None
        try:
            if self._opened.first is not None:
                self._note(self._opened.first)
                yield self._opened.first
            try:
                async for chunk in self._opened.rest:
                    self._note(chunk)
                    yield chunk
            except ProviderError as e:
                error = e
            except Exception as e:  # an adapter broke its contract mid-stream
                error = ProviderError(
                    ErrorKind.MID_STREAM, 502, f"stream failed ({type(e).__name__})"
                )
            if error is not None:
                yield self._error_chunk(error)
        finally:
            await self._end(error)

    def _note(self, chunk: StreamChunk) -> None:
        if chunk.usage is not None:
            self.ctx.usage = chunk.usage
        count_stream_chunk(self.ctx, chunk)  # bills a cancelled stream for what it got

    def _error_chunk(self, cause: ProviderError) -> StreamChunk:
        ctx = self.ctx
        message = ctx.state.redactor(f"upstream stream interrupted: {cause.message}")
        err = ProviderError(
            ErrorKind.MID_STREAM, cause.status, message, upstream_body=cause.upstream_body
        )
        ctx.error = err
        ctx.status = err.status
        payload = error_payload(err, message)
        return StreamChunk(data=payload, raw=orjson.dumps(payload))

    async def _end(self, error: ProviderError | None) -> None:
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
            if error is not None:
                self._metrics.error(model, d.name, ErrorKind.MID_STREAM.value)
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
    h.update(getattr(ctx.extra.get("tenant"), "response_headers", None) or {})
    return h
