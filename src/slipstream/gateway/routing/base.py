"""The routing contract: given the deployments that may take a request, pick one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from slipstream.gateway.deployment import Deployment


class Router(Protocol):
    def pick(self, candidates: Sequence[Deployment], body: dict[str, Any]) -> Deployment:
        """`candidates` is non-empty and already filtered to healthy deployments."""
        ...
