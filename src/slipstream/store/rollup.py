"""Upserting a batch of ledger rows into the daily rollup (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from slipstream.store.schema import spend_daily

DIMS = ("day", "key_id", "team_id", "org_id", "model")
SUMS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_micro")


def aggregate(values: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum a batch per (day, key, team, org, model) first: one upsert per group, not per row."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for v in values:
        dims = (v["day"], *(v[d] or "" for d in DIMS[1:]))
        g = groups.get(dims)
        if g is None:
            g = groups[dims] = {**dict(zip(DIMS, dims, strict=True)), **dict.fromkeys(SUMS, 0)}
        g["requests"] += 1
        for s in SUMS[1:]:
            g[s] += v[s]
    return list(groups.values())


def upsert_daily(conn: Connection, values: Sequence[dict[str, Any]]) -> None:
    rows = aggregate(values)
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(spend_daily)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(DIMS),
        set_={s: spend_daily.c[s] + stmt.excluded[s] for s in SUMS},
    )
    conn.execute(stmt, rows)
