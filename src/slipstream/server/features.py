"""Which feature packages a config turns on, in the order they are handed to the gateway.

This is the one place that knows the features (the gateway core knows none): each becomes a
`Feature` whose stages the gateway's chain places by phase. `open_features` builds the live
ones for `serve`; `describe_chain` builds the same chain without opening a database or
starting anything, for `slipstream config check`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from starlette.routing import Route

from slipstream.config.schema import GatewayConfig
from slipstream.gateway.chain import Chain
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.stage import Feature
from slipstream.gateway.stages import core_stages
from slipstream.guardrails import Guardrails
from slipstream.server.admin_tenancy import admin_routes
from slipstream.store import Store
from slipstream.tenancy.runtime import Tenancy

IN_MEMORY = "sqlite://"


def tenancy_enabled(config: GatewayConfig) -> bool:
    """Keys, limits, budgets and the ledger: on with a master key or a database."""
    return config.master_key is not None or config.database_url is not None


@dataclass
class Features:
    """The live features of one server process, with their lifecycle and admin routes."""

    tenancy: Tenancy | None = None
    others: list[Feature] = field(default_factory=list)

    @property
    def all(self) -> Sequence[Feature]:
        return [*self.others, *([self.tenancy] if self.tenancy is not None else [])]

    def routes(self) -> list[Route]:
        return admin_routes(self.tenancy) if self.tenancy is not None else []

    async def aclose(self) -> None:
        if self.tenancy is not None:
            await self.tenancy.aclose()  # flushes the spend ledger


def always_on() -> list[Feature]:
    """The features every config has (each reads its settings per request)."""
    return [Guardrails()]


async def open_features(config: GatewayConfig, registry: CollectorRegistry) -> Features:
    features = Features(others=always_on())
    if tenancy_enabled(config):
        features.tenancy = await asyncio.to_thread(Tenancy.from_config, config, registry)
        await features.tenancy.start()
    return features


def describe_chain(config: GatewayConfig) -> Chain:
    """The chain `serve` would build for `config`, built from stand-ins that touch nothing
    (tenancy over an in-memory store: its stages are the same objects either way)."""
    features = always_on()
    store = Store.open(IN_MEMORY) if tenancy_enabled(config) else None
    if store is not None:
        features.append(Tenancy(store, master_key=None, config=config.tenancy))
    chain = Chain.build(core_stages(GatewayMetrics(CollectorRegistry())), features)
    if store is not None:
        store.close()  # the stages are built: nothing reads the stand-in store
    return chain
