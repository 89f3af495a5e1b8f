"""Resolve the public model name to its group; refuse unknown models and impossible routes.

Picking the deployment happens per attempt inside the resilient call, because a retry or a
fallback must pick again among what is still healthy.
"""

from __future__ import annotations

from slipstream.gateway.context import RequestContext
from slipstream.gateway.resilience import ROUTE_HEADER
from slipstream.gateway.stage import Phase
from slipstream.protocol.errors import Refusal


class RouteStage:
    name = "route"
    phase = Phase.ROUTE

    async def pre(self, ctx: RequestContext) -> None:
        model = ctx.model
        if not model:
            raise Refusal(400, "missing_model", "the request has no 'model'", param="model")
        group = ctx.state.groups.get(model)
        if group is None:
            known = ", ".join(f"`{name}`" for name in ctx.state.groups)
            raise Refusal(
                404,
                "model_not_found",
                f"The model `{model}` does not exist. This server serves {known} "
                "(see GET /v1/models).",
                param="model",
            )
        route = ctx.headers.get(ROUTE_HEADER)
        if route and not any(d.matches_route(route) for d in group.deployments):
            raise Refusal(
                400,
                "unknown_route",
                f"{ROUTE_HEADER} {route!r} names no deployment or tag of model {model!r}",
            )
        ctx.group = group
