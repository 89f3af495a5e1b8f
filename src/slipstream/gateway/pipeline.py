"""The gateway: an ordered chain of stages around one resilient provider call.

    pre:  the chain's pre hooks, by phase (chain.py): request_id → meter → [auth] → route →
          [limits] → ... → [spend]   (bracketed: contributed by features, e.g. tenancy)
    call: route per attempt → retries / fallback / breakers / timeouts → provider
    chunk: for a stream, each chunk through the on_chunk hooks (stream.py)
    post: the same stages in reverse (spend prices first, meter logs last)

`Gateway` owns a `GatewayState` snapshot (config + deployments). `reload` builds a new one and
swaps the reference in one assignment: requests already running keep the snapshot they
started with; deployments whose configuration did not change carry their provider, breaker
and latency estimate over; removed ones are closed once their last request ends.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from slipstream.config.schema import DeploymentConfig, GatewayConfig, ModelConfig
from slipstream.gateway.breaker import CircuitBreaker
from slipstream.gateway.chain import Chain
from slipstream.gateway.clock import Clock
from slipstream.gateway.context import RequestContext
from slipstream.gateway.deployment import Deployment, timeouts_of
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.redact import Redactor
from slipstream.gateway.resilience import ResilientCaller
from slipstream.gateway.routing import HashRing, make_router
from slipstream.gateway.stage import Feature, Stage
from slipstream.gateway.stages import core_stages
from slipstream.gateway.state import GatewayState, ModelGroup
from slipstream.gateway.stream import GatewayStream, response_headers
from slipstream.protocol.errors import GatewayError, ProviderError, Refusal
from slipstream.providers.base import Endpoint, Provider, ProviderResponse

ProviderFactory = Callable[[DeploymentConfig], Provider]
RETIRE_POLL_S = 0.05
CLIENT_CLOSED = 499  # nginx's status for a request the client abandoned


@dataclass(eq=False)
class GatewayResult:
    """A complete (non-streaming) answer."""

    response: ProviderResponse
    deployment: str
    model: str  # the public model that answered (differs from the request after a fallback)
    request_id: str
    overhead_ms: float
    # what stages wrote to ctx.response_headers (x-ratelimit-*...), as streams and errors carry
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    # handle(after_reply=True): the post stages, for the server to run once the answer is sent
    finish: Callable[[], Awaitable[None]] | None = None

    def headers(self) -> dict[str, str]:
        return {
            "x-request-id": self.request_id,
            "x-slipstream-overhead-ms": f"{self.overhead_ms:.3f}",
            "x-slipstream-deployment": self.deployment,
            **self.extra_headers,
        }


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        provider_factory: ProviderFactory,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        features: Sequence[Feature] = (),
    ) -> None:
        """`features`: the enabled feature packages (tenancy, ...), whose stages join the
        gateway's own by phase (chain.py)."""
        self._factory = provider_factory
        self.metrics = GatewayMetrics(registry)
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        self.chain = Chain.build(core_stages(self.metrics), features)
        self._caller = ResilientCaller(self.metrics, self.clock, self.rng)
        self._retiring: set[asyncio.Task[None]] = set()
        self._orphans: list[Deployment] = []  # removed by a reload made outside the loop
        self._state = self._build(config, previous=None)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.chain.stages

    @property
    def config(self) -> GatewayConfig:
        return self._state.config

    @property
    def state(self) -> GatewayState:
        return self._state

    # -- public entry points -------------------------------------------------------------

    async def handle(
        self, endpoint: Endpoint | str, body: dict[str, Any], raw: bytes | None,
        headers: Mapping[str, str], *, after_reply: bool = False,
    ) -> GatewayResult:  # fmt: skip
        """A non-streaming request. Raises GatewayError (OpenAI-shaped, faithful status).

        `after_reply`: leave the post stages of an answered request (metrics and log line,
        spend row, limit and budget settlement) to the caller, as `result.finish()`, to run
        once the answer is on its way: the client does not wait for the bookkeeping. The
        caller must await it, whatever happens to the reply (replies.SettleAfterReply).
        """
        ctx = RequestContext.create(Endpoint(endpoint), body, raw, headers, False, self._state)
        ran = await self._pre(ctx)
        try:
            response = await self._caller.complete(ctx)
        except ProviderError as e:
            raise await self._fail(ctx, e, ran) from None
        except asyncio.CancelledError:
            await self._cancelled(ctx, ran)
            raise
        ctx.usage = response.usage
        ctx.status = response.status
        ctx.mark_ready()
        finish = None
        if after_reply:
            finish = functools.partial(self._post, ctx, ran)
        else:
            await self._post(ctx, ran)
        assert ctx.deployment is not None and ctx.served_model is not None
        return GatewayResult(
            response,
            ctx.deployment.name,
            ctx.served_model,
            ctx.request_id,
            ctx.overhead_ms,
            ctx.response_headers,
            finish,
        )

    async def handle_stream(
        self, endpoint: Endpoint | str, body: dict[str, Any], raw: bytes | None,
        headers: Mapping[str, str],
    ) -> GatewayStream:  # fmt: skip
        """A streaming request: returns after the first chunk arrived (headers can be sent).

        Failures before that fall back transparently or raise GatewayError; later ones end
        the stream with an error chunk. Iterate the result to the end or `aclose()` it.
        """
        ctx = RequestContext.create(Endpoint(endpoint), body, raw, headers, True, self._state)
        ran = await self._pre(ctx)
        try:
            opened = await self._caller.open_stream(ctx)
        except ProviderError as e:
            raise await self._fail(ctx, e, ran) from None
        except asyncio.CancelledError:
            await self._cancelled(ctx, ran)
            raise
        ctx.mark_ready()

        async def finish(c: RequestContext) -> None:
            await self._post(c, ran)

        return GatewayStream(ctx, opened, self.metrics, finish, self.chain)

    def models(self) -> list[dict[str, Any]]:
        """The /v1/models list: public names only."""
        return [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "slipstream"}
            for m in self._state.config.models
        ]

    def reload(self, config: GatewayConfig) -> None:
        """Swap in a new config; in-flight requests finish on the snapshot they started with."""
        old = self._state
        self._state = self._build(config, previous=old)
        kept = {id(d) for g in self._state.groups.values() for d in g.deployments}
        gone = [d for g in old.groups.values() for d in g.deployments if id(d) not in kept]
        if not gone:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: close them on aclose()
            self._orphans.extend(gone)
            return
        task = loop.create_task(self._retire(gone))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        live = [d for g in self._state.groups.values() for d in g.deployments]
        for d in [*live, *self._orphans]:
            await d.provider.aclose()
        self._orphans.clear()

    # -- internals -----------------------------------------------------------------------

    async def _pre(self, ctx: RequestContext) -> int:
        """Run the pre hooks; returns how many stages completed theirs (all of them). A
        refusal, returned or raised, answers at once: the stages before it get their post."""
        timings = ctx.stage_s
        clock = time.perf_counter
        for at, name, pre in self.chain.pres:
            t0 = clock()
            try:
                refusal = await pre(ctx)
            except Refusal as r:
                refusal = r
            if refusal is not None:
                raise await self._fail(ctx, refusal, at) from None
            timings[name] = clock() - t0
        return len(self.chain.stages)

    async def _post(self, ctx: RequestContext, ran: int) -> None:
        timings = ctx.stage_s
        clock = time.perf_counter
        for at, name, post in self.chain.posts:
            if at >= ran:
                continue
            t0 = clock()
            await post(ctx)  # the meter's own post is measured after it has logged
            timings[name] = timings.get(name, 0.0) + clock() - t0

    async def _fail(
        self, ctx: RequestContext, error: ProviderError | Refusal, ran: int
    ) -> GatewayError:
        ctx.error = error
        ctx.status = error.status
        ctx.mark_ready()
        await self._post(ctx, ran)
        message = ctx.state.redactor(error.message)
        return GatewayError(error, message, ctx.request_id, ctx.overhead_ms, ctx.response_headers)

    async def _cancelled(self, ctx: RequestContext, ran: int) -> None:
        """The client went away mid-call: still run the post stages (meter, later spend)."""
        ctx.status = CLIENT_CLOSED
        ctx.mark_ready()
        await self._post(ctx, ran)

    def _build(self, config: GatewayConfig, previous: GatewayState | None) -> GatewayState:
        reuse: dict[tuple[str, str], Deployment] = {}
        if previous is not None:
            for g in previous.groups.values():
                for d in g.deployments:
                    reuse[(g.name, d.name)] = d
        groups = {m.name: self._group(m, reuse) for m in config.models}
        generation = previous.generation + 1 if previous is not None else 0
        return GatewayState(config, groups, Redactor(config.secrets()), generation)

    def _group(self, m: ModelConfig, reuse: dict[tuple[str, str], Deployment]) -> ModelGroup:
        deployments = []
        for dc in m.deployments:
            old = reuse.get((m.name, dc.name))
            if old is not None and old.config == dc and old.breaker.config == m.circuit_breaker:
                deployments.append(old)
            else:
                deployments.append(self._deployment(m, dc))
        ring = (
            HashRing({d.name: d.weight for d in deployments}) if m.routing.sticky_header else None
        )
        router = make_router(m.routing.strategy, self.rng)
        return ModelGroup(m, tuple(deployments), router, ring)

    def _deployment(self, m: ModelConfig, dc: DeploymentConfig) -> Deployment:
        def on_change(state: int, model: str = m.name, name: str = dc.name) -> None:
            self.metrics.breaker(model, name, int(state))

        breaker = CircuitBreaker(m.circuit_breaker, self.clock.now, on_change)
        self.metrics.breaker(m.name, dc.name, 0)
        return Deployment(m.name, dc, self._factory(dc), breaker, timeouts_of(dc))

    async def _retire(self, gone: list[Deployment]) -> None:
        while any(d.outstanding for d in gone):
            await asyncio.sleep(RETIRE_POLL_S)
        for d in gone:
            await d.provider.aclose()


__all__ = ["Gateway", "GatewayError", "GatewayResult", "GatewayStream", "response_headers"]
