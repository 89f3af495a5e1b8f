"""The gateway's immutable snapshot: config + runtime groups, swapped atomically on reload."""

from __future__ import annotations

from dataclasses import dataclass

from slipstream.config.schema import GatewayConfig, ModelConfig
from slipstream.gateway.deployment import Deployment
from slipstream.gateway.redact import Redactor
from slipstream.gateway.routing import HashRing, Router


@dataclass(eq=False)
class ModelGroup:
    """A public model: its config, its deployments and its router."""

    config: ModelConfig
    deployments: tuple[Deployment, ...]
    router: Router
    ring: HashRing | None = None  # when `routing.sticky_header` is set

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, eq=False)
class GatewayState:
    """What one request sees from start to end, even if a reload happens meanwhile."""

    config: GatewayConfig
    groups: dict[str, ModelGroup]
    redactor: Redactor
    generation: int = 0  # one more at each reload: what stages derive from the config keys on it
