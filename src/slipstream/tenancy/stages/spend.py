"""Spend: price the request from its usage and queue one ledger row (written in background).

Usage comes from the upstream (the provider adapters ask every stream for it and withhold
the usage chunk from clients that did not ask); when it is missing — an upstream that does
not report it, a stream the client cancelled — the request is billed from counted output
(chars/4 of what `on_chunk` saw streamed) and the prompt estimate, never $0.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from slipstream.gateway.context import RequestContext
from slipstream.gateway.stage import Phase
from slipstream.providers.base import StreamChunk, Usage
from slipstream.tenancy.ledger import LedgerRow
from slipstream.tenancy.request import CHARS_PER_TOKEN, TENANT, TenantRequest

if TYPE_CHECKING:
    from slipstream.tenancy.runtime import Tenancy


def billed_usage(ctx: RequestContext, t: TenantRequest) -> tuple[Usage | None, str]:
    if ctx.usage is not None:
        return ctx.usage, "upstream"
    if t.counted_chars > 0:
        out = math.ceil(t.counted_chars / CHARS_PER_TOKEN)
        return Usage(t.prompt_estimate, out, 0), "counted"
    return None, "none"


def streamed_chars(data: dict[str, Any]) -> int:
    """Characters of generated text (content, tool-call names and arguments) in one chunk."""
    n = 0
    for choice in data.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            c = delta.get("content")
            if isinstance(c, str):
                n += len(c)
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    n += len(str(fn.get("arguments") or "")) + len(str(fn.get("name") or ""))
        elif isinstance(choice, dict) and isinstance(choice.get("text"), str):
            n += len(choice["text"])
    return n


class SpendStage:
    name = "spend"
    phase = Phase.BILL

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy

    async def on_chunk(self, ctx: RequestContext, chunk: StreamChunk) -> StreamChunk:
        """Count the streamed output the client gets, for a stream without upstream usage."""
        t = ctx.get(TENANT)
        if t is not None and chunk.data is not None:
            t.counted_chars += streamed_chars(chunk.data)
        return chunk

    async def post(self, ctx: RequestContext) -> None:
        t = ctx.get(TENANT)
        d = ctx.deployment
        if t is None or d is None:
            return  # refused before any upstream call: nothing was spent
        usage, source = billed_usage(ctx, t)
        price = self.tenancy.prices.for_deployment(d.config)
        cost = price.cost_micro(usage) if usage is not None else 0
        t.cost_micro = cost
        key, team, org = t.key, t.team, t.org
        # Positional, each field named beside it: 19 keyword arguments cost ~1.3 µs more per
        # request than none (measured); mypy checks each field's type. Times unrounded, `ts`
        # in Unix seconds: see LedgerRow.
        self.tenancy.writer.put(LedgerRow(
            time.time(),  # ts
            ctx.request_id,  # request_id
            ctx.status,  # status
            org.id if org else (key.org_id if key else None),  # org_id
            team.id if team else (key.team_id if key else None),  # team_id
            key.id if key else None,  # key_id
            t.end_user,  # end_user
            ctx.served_model or (ctx.group.name if ctx.group else None),  # model
            d.name,  # deployment
            d.config.provider,  # provider
            usage.prompt_tokens if usage else 0,  # prompt_tokens
            usage.cached_tokens if usage else 0,  # cached_tokens
            usage.completion_tokens if usage else 0,  # completion_tokens
            cost,  # cost_micro
            ctx.elapsed_s() * 1e3,  # latency_ms
            ctx.ttft_s * 1e3 if ctx.ttft_s is not None else None,  # ttft_ms
            ctx.stream,  # stream
            source,  # usage_source
            t.tags,  # tags
        ))  # fmt: skip
