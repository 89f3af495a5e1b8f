"""Counting streamed output, so a stream without upstream usage is never billed $0.

`count_stream_chunk` is called for every chunk the gateway hands to the client; when the
upstream's usage never comes (it does not report it, or the client cancelled), the spend
stage bills chars/4 of what was generated.
"""

from __future__ import annotations

from slipstream.gateway.context import RequestContext
from slipstream.providers.base import StreamChunk
from slipstream.tenancy.request import EXTRA, TenantRequest


def count_stream_chunk(ctx: RequestContext, chunk: StreamChunk) -> None:
    t = ctx.extra.get(EXTRA)
    data = chunk.data
    if not isinstance(t, TenantRequest) or not isinstance(data, dict):
        return
    for choice in data.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict):
            c = delta.get("content")
            if isinstance(c, str):
                t.counted_chars += len(c)
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    t.counted_chars += len(str(fn.get("arguments") or "")) + len(
                        str(fn.get("name") or "")
                    )
        elif isinstance(choice, dict) and isinstance(choice.get("text"), str):
            t.counted_chars += len(choice["text"])
