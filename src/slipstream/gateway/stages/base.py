"""The stage contract: pre/post hooks around the one provider call (Bifrost's plugin shape).

`pre` runs in list order before the call and may raise `ProviderError` to answer early (auth,
limits...); `post` runs in reverse order after the call, also on failure (`ctx.error` set),
and for a stream after its last chunk. Only stages whose `pre` completed get a `post`.
"""

from __future__ import annotations

from typing import Protocol

from slipstream.gateway.context import RequestContext


class Stage(Protocol):
    name: str

    async def pre(self, ctx: RequestContext) -> None: ...

    async def post(self, ctx: RequestContext) -> None: ...
