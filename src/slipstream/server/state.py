"""`ServerState`: what every route needs, kept on `app.state.slipstream` (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from slipstream.engine.client import AsyncEngineClient
from slipstream.obs.metrics import ServingMetrics
from slipstream.protocol.errors import APIError

DEFAULT_MAX_QUEUE = 256


@dataclass
class ServerState:
    client: AsyncEngineClient
    served_model_name: str
    metrics: ServingMetrics
    max_queue: int = DEFAULT_MAX_QUEUE

    @property
    def max_outstanding(self) -> int:
        """Engine requests admitted at once: a full running batch plus `max_queue` waiting."""
        return self.client.config.scheduler.max_num_seqs + self.max_queue

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.served_model_name:
            raise APIError(
                404,
                f"The model `{model}` does not exist. This server serves "
                f"`{self.served_model_name}` (see GET /v1/models).",
                param="model",
                code="model_not_found",
            )

    def admit(self, num_requests: int) -> None:
        """Refuse with 503 + Retry-After when the engine's queue is full (bounded queue)."""
        outstanding = self.client.num_outstanding
        if outstanding + num_requests > self.max_outstanding:
            raise APIError(
                503,
                f"The server is overloaded: {outstanding} requests are in flight and the "
                f"limit is {self.max_outstanding}. Retry shortly.",
                type="server_overloaded",
                code="queue_full",
                headers={"Retry-After": "1"},
            )


def get_state(request: Request) -> ServerState:
    return request.app.state.slipstream
