"""`ServerState`: what every route needs, kept on `app.state.slipstream` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from slipstream.engine.client import AsyncEngineClient
from slipstream.gateway import Gateway
from slipstream.gateway.reloader import ConfigReloader
from slipstream.obs.metrics import ServingMetrics

DEFAULT_MAX_QUEUE = 256


@dataclass
class ServerState:
    gateway: Gateway
    client: AsyncEngineClient | None = None  # the embedded engine, when a deployment is local
    engine_metrics: ServingMetrics | None = None
    reloader: ConfigReloader | None = None  # set when serving from a config file


def get_state(request: Request) -> ServerState:
    return request.app.state.slipstream
