"""The gateway core: the stage contract and chain, routing and resilience in front of every
provider. It imports no feature package: features hand it their stages (stage.Feature)."""

from slipstream.gateway.pipeline import Gateway, GatewayResult, ProviderFactory
from slipstream.gateway.stage import EndStream, Feature, Phase, Stage
from slipstream.gateway.stream import GatewayStream
from slipstream.protocol.errors import GatewayError, Refusal

__all__ = [
    "EndStream",
    "Feature",
    "Gateway",
    "GatewayError",
    "GatewayResult",
    "GatewayStream",
    "Phase",
    "ProviderFactory",
    "Refusal",
    "Stage",
]
