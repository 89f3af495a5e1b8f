"""Meter: per-request metrics and one structured JSON log line, written after the answer.

The log line holds identifiers, timings, counts and the (already redacted) error message:
never headers, bodies or configuration, so it cannot carry a credential.
"""

from __future__ import annotations

import logging

import orjson

from slipstream.gateway.context import RequestContext
from slipstream.gateway.metrics import GatewayMetrics
from slipstream.gateway.stage import Phase
from slipstream.protocol.errors import ProviderError, Refusal

logger = logging.getLogger("slipstream.gateway.requests")


class MeterStage:
    name = "meter"
    phase = Phase.OBSERVE

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    async def post(self, ctx: RequestContext) -> None:
        elapsed = ctx.elapsed_s()
        model = ctx.group.name if ctx.group is not None else "unknown"
        self.metrics.request_done(model, ctx.status, elapsed, ctx.overhead_s)
        if logger.isEnabledFor(logging.INFO):
            logger.info(orjson.dumps(log_record(ctx, elapsed)).decode())


def log_record(ctx: RequestContext, elapsed_s: float) -> dict[str, object]:
    u = ctx.usage
    err = ctx.error
    return {
        "event": "request",
        "request_id": ctx.request_id,
        "endpoint": ctx.endpoint.value,
        "model": ctx.group.name if ctx.group is not None else None,
        "served_model": ctx.served_model,
        "deployment": ctx.deployment.name if ctx.deployment is not None else None,
        "stream": ctx.stream,
        "status": ctx.status,
        "error_kind": (err.kind.value if isinstance(err, ProviderError) else "refused")
        if err is not None
        else None,
        "error_code": err.code if isinstance(err, Refusal) else None,
        "error": ctx.state.redactor(err.message) if err is not None else None,
        "attempts": ctx.attempts,
        "retries": ctx.retries,
        "fallbacks": ctx.fallbacks,
        "latency_ms": round(elapsed_s * 1e3, 3),
        "ttft_ms": round(ctx.ttft_s * 1e3, 3) if ctx.ttft_s is not None else None,
        "overhead_ms": round(ctx.overhead_ms, 3),
        "stages_ms": {k: round(v * 1e3, 4) for k, v in ctx.stage_s.items()},
        "prompt_tokens": u.prompt_tokens if u else None,
        "completion_tokens": u.completion_tokens if u else None,
        "cached_tokens": u.cached_tokens if u else None,
    }
