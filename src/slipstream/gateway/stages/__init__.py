"""Pipeline stages, one per module; `default_stages` is the ordered chain."""

from __future__ import annotations

from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.stages.base import Stage
from slipstream.gateway.stages.meter import MeterStage
from slipstream.gateway.stages.request_id import RequestIdStage
from slipstream.gateway.stages.route import RouteStage


def default_stages(metrics: GatewayMetrics) -> list[Stage]:
    """The chain before the provider call. Add a stage with one line here (auth, limits...)."""
    return [
        RequestIdStage(),
        MeterStage(metrics),  # early, so its post sees every request, rejected ones too
        RouteStage(),
    ]


__all__ = ["MeterStage", "RequestIdStage", "RouteStage", "Stage", "default_stages"]
