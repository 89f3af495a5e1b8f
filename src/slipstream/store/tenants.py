"""Orgs, teams and virtual keys in the database (admin-side; never on the request path)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Engine, Row, insert, or_, select, update

from slipstream.store import schema as t
from slipstream.store.keygen import hash_key, hint_of, new_key
from slipstream.store.records import (
    WINDOWS,
    KeyRecord,
    Limits,
    OrgRecord,
    TeamRecord,
    as_utc,
    utcnow,
)


class NotFound(LookupError):
    """No org, team or key by that id or name."""


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _check_window(limits: Limits) -> None:
    if limits.budget_window is not None and limits.budget_window not in WINDOWS:
        raise ValueError(f"budget_window must be one of {list(WINDOWS)}")


def _limit_values(limits: Limits) -> dict[str, Any]:
    _check_window(limits)
    return {
        "models": list(limits.models) if limits.models is not None else None,
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "max_parallel": limits.max_parallel,
        "budget_micro": limits.budget_micro,
        "budget_window": limits.budget_window,
    }


def _limits(r: Row[Any]) -> Limits:
    m = r.models
    return Limits(
        models=tuple(m) if m is not None else None,
        rpm=r.rpm,
        tpm=r.tpm,
        max_parallel=r.max_parallel,
        budget_micro=r.budget_micro,
        budget_window=r.budget_window,
    )


def _key(r: Row[Any]) -> KeyRecord:
    return KeyRecord(
        id=r.id,
        key_hash=r.key_hash,
        hint=r.hint,
        name=r.name,
        team_id=r.team_id,
        org_id=r.org_id,
        limits=_limits(r),
        expires_at=as_utc(r.expires_at),
        revoked=bool(r.revoked),
        tags=tuple(r.tags or ()),
        metadata=dict(r.metadata or {}),
        created_at=as_utc(r.created_at),
    )


class TenantStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- orgs and teams ------------------------------------------------------------------

    def create_org(
        self, name: str, budget_micro: int | None = None, budget_window: str | None = None
    ) -> OrgRecord:
        _check_window(Limits(budget_window=budget_window))
        org = OrgRecord(_id("org"), name, budget_micro, budget_window)
        with self.engine.begin() as c:
            c.execute(
                insert(t.orgs).values(
                    id=org.id, name=name, budget_micro=budget_micro,
                    budget_window=budget_window, created_at=utcnow(),
                )
            )  # fmt: skip
        return org

    def list_orgs(self) -> list[OrgRecord]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.orgs).order_by(t.orgs.c.name)).all()
        return [OrgRecord(r.id, r.name, r.budget_micro, r.budget_window) for r in rows]

    def org(self, ref: str) -> OrgRecord:
        for o in self.list_orgs():
            if ref in (o.id, o.name):
                return o
        raise NotFound(f"no org {ref!r}")

    def create_team(
        self, name: str, org: str | None = None, limits: Limits | None = None
    ) -> TeamRecord:
        limits = limits or Limits()
        org_id = self.org(org).id if org else None
        team = TeamRecord(_id("team"), name, org_id, limits)
        with self.engine.begin() as c:
            c.execute(
                insert(t.teams).values(
                    id=team.id, name=name, org_id=org_id, created_at=utcnow(),
                    **_limit_values(limits),
                )
            )  # fmt: skip
        return team

    def list_teams(self) -> list[TeamRecord]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.teams).order_by(t.teams.c.name)).all()
        return [TeamRecord(r.id, r.name, r.org_id, _limits(r)) for r in rows]

    def team(self, ref: str) -> TeamRecord:
        with self.engine.connect() as c:
            r = c.execute(
                select(t.teams).where(or_(t.teams.c.id == ref, t.teams.c.name == ref))
            ).first()
        if r is None:
            raise NotFound(f"no team {ref!r}")
        return TeamRecord(r.id, r.name, r.org_id, _limits(r))

    # -- keys ----------------------------------------------------------------------------

    def create_key(
        self,
        *,
        team: str | None = None,
        name: str | None = None,
        limits: Limits | None = None,
        expires_at: dt.datetime | None = None,
        tags: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key: returns the key material (shown once) and its stored record."""
        limits = limits or Limits()
        tr = self.team(team) if team else None
        key = new_key()
        now = utcnow()
        values = {
            "id": _id("key"),
            "key_hash": hash_key(key),
            "hint": hint_of(key),
            "name": name,
            "team_id": tr.id if tr else None,
            "org_id": tr.org_id if tr else None,
            "expires_at": as_utc(expires_at),
            "revoked": False,
            "tags": list(tags),
            "metadata": metadata or {},
            "created_at": now,
            "updated_at": now,
            **_limit_values(limits),
        }
        with self.engine.begin() as c:
            c.execute(insert(t.keys).values(**values))
        return key, self.key(values["id"])

    def key(self, key_id: str) -> KeyRecord:
        with self.engine.connect() as c:
            r = c.execute(select(t.keys).where(t.keys.c.id == key_id)).first()
        if r is None:
            raise NotFound(f"no key {key_id!r}")
        return _key(r)

    def list_keys(self, team: str | None = None) -> list[KeyRecord]:
        q = select(t.keys).order_by(t.keys.c.created_at)
        if team:
            q = q.where(t.keys.c.team_id == self.team(team).id)
        with self.engine.connect() as c:
            return [_key(r) for r in c.execute(q)]

    def keys_changed_since(self, since: dt.datetime) -> list[KeyRecord]:
        """Keys created, revoked or rotated at or after `since` (incremental cache refresh)."""
        q = select(t.keys).where(t.keys.c.updated_at >= since)
        with self.engine.connect() as c:
            return [_key(r) for r in c.execute(q)]

    def revoke_key(self, key_id: str) -> KeyRecord:
        self._update(key_id, revoked=True)
        return self.key(key_id)

    def rotate_key(self, key_id: str) -> tuple[str, KeyRecord]:
        """Same id, limits and spend history; new material. The old key stops working."""
        key = new_key()
        self._update(key_id, key_hash=hash_key(key), hint=hint_of(key))
        return key, self.key(key_id)

    def _update(self, key_id: str, **values: Any) -> None:
        with self.engine.begin() as c:
            n = c.execute(
                update(t.keys).where(t.keys.c.id == key_id).values(updated_at=utcnow(), **values)
            ).rowcount
        if n == 0:
            raise NotFound(f"no key {key_id!r}")
