"""The gateway's own stages, one per module; features add theirs through `Feature.stages()`."""

from __future__ import annotations

from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.stage import Stage
from slipstream.gateway.stages.meter import MeterStage
from slipstream.gateway.stages.request_id import RequestIdStage
from slipstream.gateway.stages.route import RouteStage


def core_stages(metrics: GatewayMetrics) -> list[Stage]:
    """Request identity, metering and routing: the chain when no feature is enabled."""
    return [RequestIdStage(), MeterStage(metrics), RouteStage()]


__all__ = ["MeterStage", "RequestIdStage", "RouteStage", "core_stages"]
