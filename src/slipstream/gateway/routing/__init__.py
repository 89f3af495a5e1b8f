"""Per-model routing strategies; `make_router` maps the configured strategy to one."""

from __future__ import annotations

import random

from slipstream.gateway.routing.base import Router
from slipstream.gateway.routing.least_outstanding import LeastOutstandingRouter
from slipstream.gateway.routing.lowest_cost import LowestCostRouter
from slipstream.gateway.routing.lowest_latency import LowestLatencyRouter
from slipstream.gateway.routing.sticky import HashRing
from slipstream.gateway.routing.weighted import WeightedRouter

_STRATEGIES = {
    "weighted": WeightedRouter,
    "least_outstanding": LeastOutstandingRouter,
    "lowest_latency": LowestLatencyRouter,
    "lowest_cost": LowestCostRouter,
}


def make_router(strategy: str, rng: random.Random) -> Router:
    return _STRATEGIES[strategy](rng)


__all__ = [
    "HashRing",
    "LeastOutstandingRouter",
    "LowestCostRouter",
    "LowestLatencyRouter",
    "Router",
    "WeightedRouter",
    "make_router",
]
