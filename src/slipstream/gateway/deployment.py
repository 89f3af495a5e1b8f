"""Runtime state of one configured deployment.

A `Deployment` outlives config reloads when its configuration is unchanged, so its provider
connection pool, circuit breaker and latency estimate carry over.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipstream.config.schema import DeploymentConfig
from slipstream.gateway.breaker import CircuitBreaker
from slipstream.providers.base import Provider, Timeouts

EWMA_ALPHA = 0.3  # weight of the newest TTFT sample


@dataclass(eq=False)
class Deployment:
    model: str  # the public model name this deployment serves
    config: DeploymentConfig
    provider: Provider
    breaker: CircuitBreaker
    timeouts: Timeouts
    outstanding: int = 0  # requests in flight right now (streams until their last chunk)
    ewma_ttft_s: float | None = None
    cooldown_until: float = 0.0  # monotonic time before which a 429's Retry-After says wait

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def weight(self) -> float:
        return self.config.weight

    def observe_ttft(self, seconds: float) -> None:
        prev = self.ewma_ttft_s
        self.ewma_ttft_s = seconds if prev is None else prev + EWMA_ALPHA * (seconds - prev)

    def matches_route(self, route: str) -> bool:
        """`x-slipstream-route` names a deployment or one of its tags."""
        return route == self.config.name or route in self.config.tags


def timeouts_of(config: DeploymentConfig) -> Timeouts:
    t = config.timeouts
    return Timeouts(connect_s=t.connect, first_token_s=t.first_token, total_s=t.total)
