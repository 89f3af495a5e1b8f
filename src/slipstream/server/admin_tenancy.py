"""The tenancy admin API: keys, teams, orgs and spend, behind the master key.

`admin_routes(tenancy)` returns full-path Routes for the server's route list. Store calls run
in a thread; after a change the local key cache is refreshed at once (other replicas pick it
up within `key_refresh_s`). Errors are OpenAI-shaped JSON bodies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from slipstream.protocol.errors import error_body
from slipstream.server.admin_schemas import KeyCreate, OrgCreate, TeamCreate
from slipstream.store import NotFound
from slipstream.store.records import MICRO, KeyRecord, OrgRecord, TeamRecord
from slipstream.tenancy.runtime import Tenancy

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    return JSONResponse(error_body(message, type=kind, code=code), status_code=status)


def _team(t: TeamRecord) -> dict[str, Any]:
    lim = t.limits
    return {
        "id": t.id,
        "name": t.name,
        "org_id": t.org_id,
        "models": list(lim.models) if lim.models is not None else None,
        "rpm": lim.rpm,
        "tpm": lim.tpm,
        "max_parallel": lim.max_parallel,
        "budget_usd": lim.budget_micro / MICRO if lim.budget_micro is not None else None,
        "budget_window": lim.budget_window,
    }


def _org(o: OrgRecord) -> dict[str, Any]:
    budget = o.budget_micro / MICRO if o.budget_micro is not None else None
    return {"id": o.id, "name": o.name, "budget_usd": budget, "budget_window": o.budget_window}


def _created(key: str, rec: KeyRecord) -> dict[str, Any]:
    return {"key": key, **rec.public()}


def _day(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


class AdminAPI:
    def __init__(self, tenancy: Tenancy) -> None:
        self.tenancy = tenancy

    def guarded(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            master = self.tenancy.master_key
            if master is None:
                return _error(
                    404, "The admin API is off: no master_key is configured.", "not_found"
                )
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {master}".encode()):
                return _error(
                    401, "Admin calls need 'Authorization: Bearer <master_key>'.", "invalid_api_key"
                )
            try:
                return await handler(request)
            except NotFound as e:
                return _error(404, str(e), "not_found")
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "body"
                return _error(400, f"{where}: {first['msg']}", "invalid_body")
            except ValueError as e:
                return _error(400, str(e), "invalid_body")

        return endpoint

    async def _body(self, request: Request, model: type[BaseModel]) -> Any:
        raw = await request.body()
        return model.model_validate_json(raw or b"{}")

    async def _changed(self) -> None:
        await self.tenancy.refresh()

    async def create_key(self, request: Request) -> Response:
        b: KeyCreate = await self._body(request, KeyCreate)
        key, rec = await asyncio.to_thread(
            self.tenancy.store.tenants.create_key,
            team=b.team, name=b.name, limits=b.limits(), expires_at=b.expiry(),
            tags=tuple(b.tags), metadata=b.metadata,
        )  # fmt: skip
        await self._changed()
        return JSONResponse(_created(key, rec))

    async def list_keys(self, request: Request) -> Response:
        team = request.query_params.get("team")
        recs = await asyncio.to_thread(self.tenancy.store.tenants.list_keys, team)
        return JSONResponse({"object": "list", "data": [r.public() for r in recs]})

    async def show_key(self, request: Request) -> Response:
        rec = await asyncio.to_thread(self.tenancy.store.tenants.key, request.path_params["key_id"])
        return JSONResponse(rec.public())

    async def revoke_key(self, request: Request) -> Response:
        t = self.tenancy.store.tenants
        rec = await asyncio.to_thread(t.revoke_key, request.path_params["key_id"])
        await self._changed()
        return JSONResponse(rec.public())

    async def rotate_key(self, request: Request) -> Response:
        t = self.tenancy.store.tenants
        key, rec = await asyncio.to_thread(t.rotate_key, request.path_params["key_id"])
        await self._changed()
        return JSONResponse(_created(key, rec))

    async def create_team(self, request: Request) -> Response:
        b: TeamCreate = await self._body(request, TeamCreate)
        t = await asyncio.to_thread(
            self.tenancy.store.tenants.create_team, b.name, b.org, b.limits()
        )
        await self._changed()
        return JSONResponse(_team(t))

    async def list_teams(self, request: Request) -> Response:
        teams = await asyncio.to_thread(self.tenancy.store.tenants.list_teams)
        return JSONResponse({"object": "list", "data": [_team(t) for t in teams]})

    async def create_org(self, request: Request) -> Response:
        b: OrgCreate = await self._body(request, OrgCreate)
        micro = round(b.budget_usd * MICRO) if b.budget_usd is not None else None
        window = b.budget_window or ("monthly" if micro is not None else None)
        o = await asyncio.to_thread(self.tenancy.store.tenants.create_org, b.name, micro, window)
        await self._changed()
        return JSONResponse(_org(o))

    async def list_orgs(self, request: Request) -> Response:
        orgs = await asyncio.to_thread(self.tenancy.store.tenants.list_orgs)
        return JSONResponse({"object": "list", "data": [_org(o) for o in orgs]})

    async def spend(self, request: Request) -> Response:
        q = request.query_params
        group_by = q.get("group_by", "key")
        where = {k: q[k] for k in ("key", "team", "org", "model") if q.get(k)}
        rows = await asyncio.to_thread(
            self.tenancy.store.spend.report,
            group_by, _day(q.get("since")), _day(q.get("until")), where,
        )  # fmt: skip
        for r in rows:
            r["cost_usd"] = r["cost_micro"] / MICRO
        return JSONResponse(
            {"object": "list", "group_by": group_by, "currency": "USD", "data": rows}
        )


def admin_routes(tenancy: Tenancy) -> list[Route]:
    api = AdminAPI(tenancy)
    g = api.guarded
    return [
        Route("/admin/keys", g(api.create_key), methods=["POST"]),
        Route("/admin/keys", g(api.list_keys), methods=["GET"]),
        Route("/admin/keys/{key_id}", g(api.show_key), methods=["GET"]),
        Route("/admin/keys/{key_id}", g(api.revoke_key), methods=["DELETE"]),
        Route("/admin/keys/{key_id}/revoke", g(api.revoke_key), methods=["POST"]),
        Route("/admin/keys/{key_id}/rotate", g(api.rotate_key), methods=["POST"]),
        Route("/admin/teams", g(api.create_team), methods=["POST"]),
        Route("/admin/teams", g(api.list_teams), methods=["GET"]),
        Route("/admin/orgs", g(api.create_org), methods=["POST"]),
        Route("/admin/orgs", g(api.list_orgs), methods=["GET"]),
        Route("/admin/spend", g(api.spend), methods=["GET"]),
    ]
