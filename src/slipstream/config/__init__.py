"""`slipstream.yaml`: schema, loading and secret references."""

from slipstream.config.loader import ConfigError, load_config, parse_config
from slipstream.config.schema import (
    CircuitBreakerConfig,
    DeploymentConfig,
    GatewayConfig,
    ModelConfig,
    PricesConfig,
    RetriesConfig,
    RoutingConfig,
    TimeoutsConfig,
)
from slipstream.config.secrets import Secret, resolve_secret

__all__ = [
    "CircuitBreakerConfig",
    "ConfigError",
    "DeploymentConfig",
    "GatewayConfig",
    "ModelConfig",
    "PricesConfig",
    "RetriesConfig",
    "RoutingConfig",
    "Secret",
    "TimeoutsConfig",
    "load_config",
    "parse_config",
    "resolve_secret",
]
