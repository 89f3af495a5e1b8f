"""The gateway pipeline: stages, routing and resilience in front of every provider."""

from slipstream.gateway.errors import GatewayError
from slipstream.gateway.pipeline import Gateway, GatewayResult, ProviderFactory
from slipstream.gateway.stream import GatewayStream

__all__ = ["Gateway", "GatewayError", "GatewayResult", "GatewayStream", "ProviderFactory"]
