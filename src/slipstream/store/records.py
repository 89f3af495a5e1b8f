"""Plain typed records the store hands out: what a key, team, org and ledger row are."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Window = Literal["daily", "weekly", "monthly"]
WINDOWS: tuple[str, ...] = ("daily", "weekly", "monthly")
MICRO = 1_000_000  # micro-dollars per USD


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives naive datetimes back; every time we hold is aware UTC."""
    if t is None:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def window_start(window: str | None, now: dt.datetime) -> dt.date:
    """The first day of the budget window containing `now` (UTC; weeks start on Monday)."""
    day = now.astimezone(dt.UTC).date()
    if window == "weekly":
        return day - dt.timedelta(days=day.weekday())
    if window == "monthly":
        return day.replace(day=1)
    return day  # daily, and the default


@dataclass(frozen=True)
class Limits:
    """Per-key / per-team limits; None means no limit of that kind."""

    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_micro: int | None = None
    budget_window: str | None = None


@dataclass(frozen=True)
class OrgRecord:
    id: str
    name: str
    budget_micro: int | None = None
    budget_window: str | None = None


@dataclass(frozen=True)
class TeamRecord:
    id: str
    name: str
    org_id: str | None
    limits: Limits = Limits()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    key_hash: str
    hint: str
    name: str | None
    team_id: str | None
    org_id: str | None
    limits: Limits
    expires_at: dt.datetime | None
    revoked: bool
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None

    def public(self) -> dict[str, Any]:
        """The admin API view: everything but the hash."""
        lim = self.limits
        return {
            "id": self.id,
            "hint": self.hint,
            "name": self.name,
            "team_id": self.team_id,
            "org_id": self.org_id,
            "models": list(lim.models) if lim.models is not None else None,
            "rpm": lim.rpm,
            "tpm": lim.tpm,
            "max_parallel": lim.max_parallel,
            "budget_usd": lim.budget_micro / MICRO if lim.budget_micro is not None else None,
            "budget_window": lim.budget_window,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked": self.revoked,
            "tags": list(self.tags),
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


class LedgerRow(NamedTuple):
    """One request in the spend ledger, as the gateway queues it and the store writes it.

    A tuple with named fields: one is built per answered request, on the event loop, and the
    writers queue it as it is (the writer process is handed its fields as a plain tuple). `ts`
    is Unix seconds (`time.time()` is 4x cheaper than an aware datetime); `latency_ms` and
    `ttft_ms` may be unrounded: the store rounds them to the microsecond when it writes the
    row, off the request path. `cost_micro` is exact integer micro-dollars.
    """

    ts: float
    request_id: str
    status: int
    org_id: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    end_user: str | None = None
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_micro: int = 0
    latency_ms: float | None = None
    ttft_ms: float | None = None
    stream: bool = False
    usage_source: str = "upstream"
    tags: tuple[str, ...] = ()
