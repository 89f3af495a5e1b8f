"""A per-model cap on the request body: `models[].max_request_bytes` in slipstream.yaml.

A request larger than its model's cap is refused with 413 before any upstream sees it (an
oversized prompt costs upstream money and queue time only to fail on the context window).
It runs in the admit phase, after route, so it knows the model group and reads the cap from
the config snapshot the request started with: a reload changes caps without a restart.
"""

from __future__ import annotations

import orjson

from slipstream.gateway.context import RequestContext
from slipstream.gateway.stage import Phase
from slipstream.protocol.errors import Refusal


class RequestSizeCap:
    name = "size_cap"
    phase = Phase.ADMIT

    async def pre(self, ctx: RequestContext) -> Refusal | None:
        group = ctx.group
        if group is None or group.config.max_request_bytes is None:
            return None
        cap = group.config.max_request_bytes
        size = len(ctx.raw) if ctx.raw is not None else len(orjson.dumps(ctx.body))
        if size <= cap:
            return None
        return Refusal(
            413,
            "request_too_large",
            f"The request body is {size:,} bytes; model {group.name!r} accepts at most "
            f"{cap:,} (max_request_bytes). Send a shorter prompt or fewer messages.",
        )
