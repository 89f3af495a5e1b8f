"""What `serve` puts behind the front doors: the gateway config (from slipstream.yaml, or a
default with one model served by the embedded engine) and the provider factory.

The engine process is needed only when some deployment is `provider: local`; it serves one
model, so every local deployment must name the same one.
"""

from __future__ import annotations

from typing import Any

from slipstream.config.loader import parse_config
from slipstream.config.schema import DeploymentConfig, GatewayConfig
from slipstream.engine.client import AsyncEngineClient
from slipstream.gateway import ProviderFactory
from slipstream.providers.base import Provider
from slipstream.providers.local import LocalEngineProvider
from slipstream.providers.registry import build_provider

# The embedded engine is one process: retrying it or opening a breaker on it only delays
# the 503 that tells the client the truth (queue full, engine down), so the default has none.
_NEVER = 1_000_000_000
DEFAULT_MODEL_SETTINGS: dict[str, Any] = {
    "retries": {"max": 0},
    "circuit_breaker": {"consecutive_failures": _NEVER, "min_requests": _NEVER},
}
LOCAL_TIMEOUTS = {"first_token": 3600.0, "total": 86400.0}  # the engine queues, it never hangs


def default_config(served_model_name: str) -> GatewayConfig:
    """No slipstream.yaml: one public model, served by the embedded engine alone."""
    deployment = {"provider": "local", "model": served_model_name, "timeouts": LOCAL_TIMEOUTS}
    model = {"name": served_model_name, "deployments": [deployment], **DEFAULT_MODEL_SETTINGS}
    return parse_config({"models": [model]}, "<default>")


def local_model(config: GatewayConfig) -> str | None:
    """The engine model the config's local deployments need (None: no engine needed)."""
    names = {d.model for m in config.models for d in m.deployments if d.provider == "local"}
    if len(names) > 1:
        raise ValueError(
            f"local deployments name different models {sorted(names)}: the embedded engine "
            "serves one model per process"
        )
    return next(iter(names), None)


def provider_factory(
    client: AsyncEngineClient | None, max_queue: int, local_names: frozenset[str] = frozenset()
) -> ProviderFactory:
    """`local_names`: the model names the running engine answers to (a reload cannot swap
    the engine's model; empty: any)."""

    def build(config: DeploymentConfig) -> Provider:
        if config.provider != "local":
            return build_provider(config)
        if client is None:
            raise ValueError(
                f"deployment {config.name!r} is local but no engine is running: restart "
                "`slipstream serve` to add the embedded engine"
            )
        if local_names and config.model not in local_names:
            raise ValueError(
                f"deployment {config.name!r} names model {config.model!r} but the embedded "
                f"engine serves {sorted(local_names)}: restart `slipstream serve` to change it"
            )
        return LocalEngineProvider(client, model=config.model, max_queue=max_queue)

    return build
