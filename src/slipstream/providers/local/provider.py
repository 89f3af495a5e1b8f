"""The embedded engine as a provider, so `provider: local` goes through the same pipeline
(routing, fallbacks, metrics) as every remote upstream.

It talks to the engine process only through `AsyncEngineClient`; the package's other
modules plan the engine requests, run them and shape their answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from slipstream.engine.client import AsyncEngineClient
from slipstream.protocol.errors import APIError
from slipstream.protocol.openai import Usage as OpenAIUsage
from slipstream.providers.base import (
    Endpoint,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Usage,
)
from slipstream.providers.local.answers import ChunkShaper, answer
from slipstream.providers.local.errors import (
    engine_error,
    from_api_error,
    no_embeddings,
    queue_full,
)
from slipstream.providers.local.plan import LocalPlan, plan_chat, plan_completion
from slipstream.providers.local.runs import collect_all, merge
from slipstream.providers.upstream_errors import mid_stream, unsupported

DEFAULT_MAX_QUEUE = 256  # engine requests allowed to wait beyond the running batch


def _usage(u: OpenAIUsage) -> Usage:
    details = u.prompt_tokens_details
    return Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cached_tokens=details.cached_tokens if details is not None else 0,
    )


def _failure(exc: Exception) -> Exception:
    """The ProviderError for an engine failure; anything else is re-raised as is."""
    return engine_error(exc) or exc


class LocalEngineProvider:
    name = "local"

    def __init__(
        self,
        client: AsyncEngineClient,
        *,
        model: str | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.client = client  # started and stopped by whoever owns the engine process
        self.model = model
        self.max_queue = max_queue

    @property
    def max_outstanding(self) -> int:
        """Engine requests admitted at once: a full running batch plus `max_queue` waiting."""
        return self.client.config.scheduler.max_num_seqs + self.max_queue

    def _model(self, request: ProviderRequest) -> str:
        return str(request.body.get("model") or self.model or "local")

    async def _plan(self, request: ProviderRequest) -> LocalPlan:
        try:
            if request.endpoint is Endpoint.CHAT:
                plan = await plan_chat(self.client, request.body)
            elif request.endpoint is Endpoint.COMPLETIONS:
                plan = await plan_completion(self.client, request.body)
            elif request.endpoint is Endpoint.EMBEDDINGS:
                raise no_embeddings(self._model(request))
            else:
                raise unsupported(self.name, request.endpoint)
        except APIError as exc:
            raise from_api_error(exc) from None
        outstanding = self.client.num_outstanding
        if outstanding + len(plan.requests) > self.max_outstanding:
            raise queue_full(outstanding, self.max_outstanding)
        return plan

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        plan = await self._plan(request)
        try:
            results = await collect_all(self.client, plan.requests)
        except Exception as exc:
            raise _failure(exc) from None
        body, usage = answer(plan, self._model(request), results)
        return ProviderResponse(body=body, usage=_usage(usage))

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        """Waits for the first engine delta before the first chunk, so a request the engine
        rejects is still a plain error (and can fall back), not a broken stream."""
        plan = await self._plan(request)
        shaper = ChunkShaper(plan, self._model(request))
        deltas = merge(self.client, plan.requests)
        try:
            try:
                first = await anext(deltas)
            except StopAsyncIteration:
                first = None
            except Exception as exc:
                raise _failure(exc) from None
            for chunk in shaper.opening():
                yield StreamChunk(data=chunk)
            if first is not None:
                yield StreamChunk(data=shaper.delta(*first))
                try:
                    async for index, delta in deltas:
                        yield StreamChunk(data=shaper.delta(index, delta))
                except Exception as exc:
                    error = _failure(exc)
                    raise (
                        mid_stream(error) if isinstance(error, ProviderError) else error
                    ) from None
            usage = shaper.usage()
            data: dict[str, Any] | None = (
                shaper.usage_chunk(usage) if plan.body.include_usage else None
            )
            yield StreamChunk(data=data, usage=_usage(usage))
        finally:
            await deltas.aclose()

    async def aclose(self) -> None:
        """The engine process belongs to the server, which shuts it down."""
