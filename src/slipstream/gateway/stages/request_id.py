"""Request identity: take the client's `x-request-id` (bounded, printable) or make one."""

from __future__ import annotations

import uuid

from slipstream.gateway.context import RequestContext

MAX_ID_LEN = 128


class RequestIdStage:
    name = "request_id"

    async def pre(self, ctx: RequestContext) -> None:
        given = ctx.headers.get("x-request-id", "")
        if given and len(given) <= MAX_ID_LEN and given.isprintable():
            ctx.request_id = given
        else:
            ctx.request_id = uuid.uuid4().hex

    async def post(self, ctx: RequestContext) -> None:
        return None
