"""Limits: requests/min, tokens/min and concurrent requests per key, per team and per model.

Tokens/min takes the entry estimate (prompt chars/4 + max_tokens) and is corrected in `post`
with the real usage; the concurrency slot is given back there too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream.gateway.context import RequestContext
from slipstream.store.records import Limits
from slipstream.tenancy.errors import too_many
from slipstream.tenancy.ratelimit import Scope
from slipstream.tenancy.request import EXTRA, TenantRequest

if TYPE_CHECKING:
    from slipstream.tenancy.runtime import Tenancy


def _scope(name: str, lim: Limits) -> Scope | None:
    if lim.rpm is None and lim.tpm is None and lim.max_parallel is None:
        return None
    return Scope(name, lim.rpm, lim.tpm, lim.max_parallel)


def scopes_of(t: TenantRequest, ctx: RequestContext) -> list[Scope]:
    """The key's, its team's and the model's limits (the key first: its headers are shown)."""
    out = []
    if t.key is not None and (s := _scope(f"key:{t.key.id}", t.key.limits)):
        out.append(s)
    if t.team is not None and (s := _scope(f"team:{t.team.id}", t.team.limits)):
        out.append(s)
    group = ctx.group
    if group is not None and (ml := group.config.limits) is not None:
        out.append(Scope(f"model:{group.name}", ml.rpm, ml.tpm, ml.max_parallel))
    return out


class LimitsStage:
    name = "limits"

    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy

    async def pre(self, ctx: RequestContext) -> None:
        t = ctx.extra.get(EXTRA)
        if not isinstance(t, TenantRequest):
            return
        scopes = scopes_of(t, ctx)
        if not scopes:
            return
        tokens = t.prompt_estimate + (t.max_tokens or 0)
        d = await self.tenancy.limiter.acquire(scopes, tokens, ctx.request_id)
        t.response_headers.update(d.headers)
        if not d.allowed:
            raise too_many(
                f"Rate limit reached: {d.reason}. Retry after {d.retry_after_s:.2f}s.",
                d.retry_after_s,
                {**d.headers, "retry-after": str(max(1, round(d.retry_after_s + 0.499)))},
                "rate_limit_exceeded",
            )
        t.limit_scopes = scopes
        t.limit_tokens = tokens

    async def post(self, ctx: RequestContext) -> None:
        t = ctx.extra.get(EXTRA)
        if not isinstance(t, TenantRequest) or not t.limit_scopes:
            return
        actual = ctx.usage.total_tokens if ctx.usage is not None else t.limit_tokens
        await self.tenancy.settle(
            self.tenancy.limiter.settle(t.limit_scopes, t.limit_tokens, actual, ctx.request_id)
        )
