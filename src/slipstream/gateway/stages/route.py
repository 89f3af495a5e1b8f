"""Resolve the public model name to its group; reject unknown models and impossible routes.

Picking the deployment happens per attempt inside the resilient call, because a retry or a
fallback must pick again among what is still healthy.
"""

from __future__ import annotations

from slipstream.gateway.context import RequestContext
from slipstream.gateway.resilience import ROUTE_HEADER
from slipstream.gateway.stages.base import passthrough
from slipstream.providers.base import ErrorKind, ProviderError


class RouteStage:
    name = "route"

    async def pre(self, ctx: RequestContext) -> None:
        model = ctx.model
        if not model:
            raise ProviderError(ErrorKind.BAD_REQUEST, 400, "the request has no 'model'")
        group = ctx.state.groups.get(model)
        if group is None:
            known = ", ".join(f"`{name}`" for name in ctx.state.groups)
            raise ProviderError(
                ErrorKind.NOT_FOUND,
                404,
                f"The model `{model}` does not exist. This server serves {known} "
                "(see GET /v1/models).",
            )
        route = ctx.headers.get(ROUTE_HEADER)
        if route and not any(d.matches_route(route) for d in group.deployments):
            raise ProviderError(
                ErrorKind.BAD_REQUEST,
                400,
                f"{ROUTE_HEADER} {route!r} names no deployment or tag of model {model!r}",
            )
        ctx.group = group

    @passthrough
    async def post(self, ctx: RequestContext) -> None:
        return None
