"""`Guardrails`: the guardrails package's one entry point into the gateway (stage.Feature)."""

from __future__ import annotations

from slipstream.gateway.stage import Stage
from slipstream.guardrails.size_cap import RequestSizeCap


class Guardrails:
    """Always on: each stage reads its settings per request from the config snapshot, so a
    reload can set or lift a cap; with none set a request costs one dictionary read."""

    name = "guardrails"

    def stages(self) -> list[Stage]:
        return [RequestSizeCap()]
