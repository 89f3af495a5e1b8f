"""One provider call made resilient: routing per attempt, retries, fallback chains, breakers.

For each model in the chain (the requested model, then its `fallbacks`; a context-window
error switches to its `context_window_fallbacks`), up to `retries.max + 1` attempts:
  - pick among deployments whose breaker admits a request, preferring ones that have not
    failed this request and are not cooling down after a 429's Retry-After;
  - an attempt on a deployment that already failed waits a full-jitter backoff; when every
    deployment is cooling down it waits out the shortest Retry-After (or, when that is longer
    than `backoff_max_s`, moves on to the next model);
  - BAD_REQUEST is final at once; CONTEXT_WINDOW leaves the model; AUTH / NOT_FOUND rule
    that deployment out for this request.
When everything is exhausted the last error is raised as is, so its status stays faithful.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from slipstream.gateway.backoff import backoff_delay
from slipstream.gateway.clock import Clock
from slipstream.gateway.context import RequestContext
from slipstream.gateway.deployment import Deployment
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.state import ModelGroup
from slipstream.gateway.timeouts import OpenedStream, complete_within, open_stream_within
from slipstream.providers.base import (
    ErrorKind,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
)

logger = logging.getLogger("slipstream.gateway")

T = TypeVar("T")
Call = Callable[[Deployment, ProviderRequest], Awaitable[T]]

ROUTE_HEADER = "x-slipstream-route"
# Faults that say something about the deployment's health (a 429 is load, not ill health).
BREAKER_FAULTS = frozenset(
    {
        ErrorKind.CONNECTION,
        ErrorKind.TIMEOUT,
        ErrorKind.SERVER,
        ErrorKind.AUTH,
        ErrorKind.MID_STREAM,
    }
)
# The deployment answered sensibly: proof of health even though the request failed.
HEALTHY_ANSWERS = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_WINDOW})
# This deployment cannot serve the request at all; do not retry it.
RULE_OUT = frozenset({ErrorKind.AUTH, ErrorKind.NOT_FOUND})


class ResilientCaller:
    def __init__(self, metrics: GatewayMetrics, clock: Clock, rng: random.Random) -> None:
        self.metrics = metrics
        self.clock = clock
        self.rng = rng

    async def complete(self, ctx: RequestContext) -> ProviderResponse:
        return await self._run(ctx, self._complete_once, streaming=False)

    async def open_stream(self, ctx: RequestContext) -> OpenedStream:
        """Returns once a first chunk arrived; every failure before it falls back transparently."""
        return await self._run(ctx, self._open_once, streaming=True)

    async def _complete_once(self, d: Deployment, request: ProviderRequest) -> ProviderResponse:
        return await complete_within(d.provider, request)

    async def _open_once(self, d: Deployment, request: ProviderRequest) -> OpenedStream:
        return await open_stream_within(d.provider, request)

    async def _run(self, ctx: RequestContext, call: Call[T], streaming: bool) -> T:
        primary = ctx.group
        assert primary is not None, "the route stage sets ctx.group"
        groups = ctx.state.groups
        chain = [primary.name, *primary.config.fallbacks]
        visited: set[str] = set()
        last: ProviderError | None = None
        i = 0
        while i < len(chain):
            name = chain[i]
            i += 1
            if name in visited or name not in groups:
                continue
            visited.add(name)
            group = groups[name]
            if group is not primary:
                ctx.fallbacks += 1
                reason = last.kind.value if last is not None else "unavailable"
                self.metrics.fallback(primary.name, name, reason)
            try:
                result = await self._within_model(ctx, group, call, streaming, group is primary)
            except ProviderError as e:
                last = e
                if e.kind is ErrorKind.BAD_REQUEST:
                    raise
                if e.kind is ErrorKind.CONTEXT_WINDOW:
                    # Ordinary fallbacks may be no larger: only larger-context models now.
                    chain = [*chain[:i], *group.config.context_window_fallbacks]
                continue
            ctx.served_model = name
            return result
        assert last is not None
        raise last

    def _pool(self, ctx: RequestContext, group: ModelGroup, primary: bool) -> Sequence[Deployment]:
        route = ctx.headers.get(ROUTE_HEADER)
        if route:
            matching = [d for d in group.deployments if d.matches_route(route)]
            if matching or primary:  # the route stage already rejected a primary with no match
                return matching
        return group.deployments

    def _pick(
        self, ctx: RequestContext, group: ModelGroup, candidates: list[Deployment]
    ) -> Deployment:
        sticky = group.config.routing.sticky_header
        if sticky and group.ring is not None:
            key = ctx.headers.get(sticky)
            if key:
                d = group.ring.pick(key, candidates)
                if d is not None:
                    return d
        return group.router.pick(candidates, ctx.body)

    async def _within_model(
        self,
        ctx: RequestContext,
        group: ModelGroup,
        call: Call[T],
        streaming: bool,
        primary: bool,
    ) -> T:
        retries = group.config.retries
        pool = self._pool(ctx, group, primary)
        failed: set[Deployment] = set()
        ruled_out: set[Deployment] = set()
        last: ProviderError | None = None
        for attempt_no in range(retries.max + 1):
            now = self.clock.now()
            usable = [d for d in pool if d not in ruled_out and d.breaker.available()]
            if not usable:
                break
            ready = [d for d in usable if d.cooldown_until <= now]
            fresh = [d for d in ready if d not in failed]
            delay = 0.0
            if fresh:
                d = self._pick(ctx, group, fresh)
            elif ready:
                d = self._pick(ctx, group, ready)
                delay = backoff_delay(retries, attempt_no - 1, self.rng)
            else:
                d = min(usable, key=lambda x: x.cooldown_until)
                delay = d.cooldown_until - now
                if delay > retries.backoff_max_s:
                    last = last or ProviderError(
                        ErrorKind.RATE_LIMITED,
                        429,
                        f"every deployment of model {group.name!r} is rate limited",
                        retry_after=delay,
                    )
                    break
            if delay > 0:
                await self.clock.sleep(delay)
            if not d.breaker.acquire():
                continue  # another request took the half-open probe slot meanwhile
            ctx.attempts += 1
            if attempt_no > 0:
                ctx.retries += 1
            self.metrics.attempt(group.name, d.name, retry=attempt_no > 0)
            try:
                return await self._attempt(ctx, group, d, call, streaming)
            except ProviderError as e:
                if e.kind in HEALTHY_ANSWERS:  # bad request / context window: not retried here
                    raise
                if e.kind in RULE_OUT:
                    ruled_out.add(d)
                failed.add(d)
                last = e
        raise last or ProviderError(
            ErrorKind.SERVER, 503, f"no deployment of model {group.name!r} is available"
        )

    async def _attempt(
        self,
        ctx: RequestContext,
        group: ModelGroup,
        d: Deployment,
        call: Call[T],
        streaming: bool,
    ) -> T:
        request = self._request(ctx, d)
        d.outstanding += 1
        t0 = time.perf_counter()
        try:
            result = await call(d, request)
        except asyncio.CancelledError:
            d.outstanding -= 1
            d.breaker.release()
            ctx.upstream_s += time.perf_counter() - t0
            raise
        except Exception as exc:
            d.outstanding -= 1
            ctx.upstream_s += time.perf_counter() - t0
            err = exc if isinstance(exc, ProviderError) else _adapter_failure(d, exc)
            self._record_failure(group, d, err)
            raise err from None
        elapsed = time.perf_counter() - t0
        ctx.upstream_s += elapsed
        if not streaming:
            d.outstanding -= 1
        d.breaker.record_success()
        d.observe_ttft(elapsed)
        ctx.deployment = d
        self.metrics.first_token(group.name, d.name, elapsed)
        if isinstance(result, ProviderResponse):
            self.metrics.upstream_done(group.name, d.name, elapsed, result.usage)
        return result

    def _record_failure(self, group: ModelGroup, d: Deployment, err: ProviderError) -> None:
        self.metrics.error(group.name, d.name, err.kind.value)
        if err.kind in BREAKER_FAULTS:
            d.breaker.record_failure()
        elif err.kind in HEALTHY_ANSWERS:
            d.breaker.record_success()
        else:
            d.breaker.release()
        if err.retry_after is not None and err.retry_after > 0:
            d.cooldown_until = max(d.cooldown_until, self.clock.now() + err.retry_after)
        logger.debug("attempt on %s/%s failed: %s", group.name, d.name, err.kind.value)

    @staticmethod
    def _request(ctx: RequestContext, d: Deployment) -> ProviderRequest:
        upstream = d.config.model
        if ctx.body.get("model") == upstream:
            body, raw = ctx.body, ctx.raw  # nothing to change: the adapter may pass bytes through
        else:
            body, raw = {**ctx.body, "model": upstream}, None
        return ProviderRequest(
            endpoint=ctx.endpoint,
            body=body,
            stream=ctx.stream,
            request_id=ctx.request_id,
            timeouts=d.timeouts,
            raw_body=raw,
            headers={"x-request-id": ctx.request_id},
        )


def _adapter_failure(d: Deployment, exc: Exception) -> ProviderError:
    """An adapter broke its contract by raising something else; only the type is safe to show."""
    logger.warning("provider adapter for %s raised %s", d.name, type(exc).__name__)
    return ProviderError(ErrorKind.SERVER, 502, f"upstream adapter failed ({type(exc).__name__})")
