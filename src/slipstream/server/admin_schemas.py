"""Request bodies of the tenancy admin API (validated, unknown fields rejected) and its
OpenAPI paths, for the server's /openapi.json."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from slipstream.store.records import MICRO, Limits

Window = Literal["daily", "weekly", "monthly"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsBody(_Body):
    models: list[str] | None = None  # None: every model
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_parallel: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, ge=0)
    budget_window: Window | None = None

    def limits(self) -> Limits:
        return Limits(
            models=tuple(self.models) if self.models is not None else None,
            rpm=self.rpm,
            tpm=self.tpm,
            max_parallel=self.max_parallel,
            budget_micro=round(self.budget_usd * MICRO) if self.budget_usd is not None else None,
            budget_window=self.budget_window
            or ("monthly" if self.budget_usd is not None else None),
        )


class KeyCreate(LimitsBody):
    team: str | None = None  # team id or name
    name: str | None = None
    expires_at: dt.datetime | None = None
    expires_in_days: float | None = Field(None, gt=0)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def expiry(self) -> dt.datetime | None:
        if self.expires_in_days is not None:
            return dt.datetime.now(dt.UTC) + dt.timedelta(days=self.expires_in_days)
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            return self.expires_at.replace(tzinfo=dt.UTC)
        return self.expires_at


class TeamCreate(LimitsBody):
    name: str = Field(min_length=1, max_length=200)
    org: str | None = None


class OrgCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    budget_usd: float | None = Field(None, ge=0)
    budget_window: Window | None = None


def _op(summary: str, body: type[BaseModel] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["admin"],
        "security": [{"masterKey": []}],
        "responses": {"200": {"description": "OK"}, "401": {"description": "No master key"}},
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body.model_json_schema()}},
        }
    return op


def admin_openapi_paths() -> dict[str, Any]:
    """Merge into the OpenAPI document's `paths`."""
    spend = _op("Spend totals grouped by key, team, org, model, tag, day, deployment or end_user")
    spend["parameters"] = [
        {"name": n, "in": "query", "schema": {"type": "string"}}
        for n in ("group_by", "since", "until", "key", "team", "org", "model")
    ]
    return {
        "/admin/keys": {
            "post": _op("Create a virtual key (the key is shown once)", KeyCreate),
            "get": _op("List keys (never their material)"),
        },
        "/admin/keys/{key_id}": {"get": _op("Show a key"), "delete": _op("Revoke a key")},
        "/admin/keys/{key_id}/revoke": {"post": _op("Revoke a key")},
        "/admin/keys/{key_id}/rotate": {"post": _op("New material for a key (same id, limits)")},
        "/admin/teams": {"post": _op("Create a team", TeamCreate), "get": _op("List teams")},
        "/admin/orgs": {"post": _op("Create an org", OrgCreate), "get": _op("List orgs")},
        "/admin/spend": {"get": spend},
    }
