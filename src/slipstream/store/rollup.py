"""Writing one batch of ledger rows: the rows, their tags and the daily rollup, with as little
Python per row as the drivers allow (the writer thread holds the GIL while it runs Python,
and the event loop serving requests needs it too).

PostgreSQL: the rows and tags go in by COPY (psycopg formats each row in C), the rollup by
one `INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO UPDATE` whatever the batch holds.
SQLite: multi-row INSERTs of plain tuples (as many rows per statement as SQLite takes
parameters), and one multi-row upsert for the rollup. Not `executemany`: sqlite3 releases
and retakes the GIL around every row it steps, and each retake contends with the event loop
serving requests (futex wake-ups and forced switches on both threads, per row); one statement
per chunk steps once. Values are stored exactly as SQLAlchemy's column types store them, so the
ORM-free write reads back through the same `Table` objects (times are written in UTC).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection

from slipstream.store.records import LedgerRow

DIMS = ("day", "key_id", "team_id", "org_id", "model")
SUMS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_micro")
SPEND_COLUMNS = (
    "ts", "day", "request_id", "org_id", "team_id", "key_id", "end_user", "model",
    "deployment", "provider", "prompt_tokens", "cached_tokens", "completion_tokens",
    "cost_micro", "latency_ms", "ttft_ms", "status", "stream", "usage_source", "tags",
)  # fmt: skip
TAG_COLUMNS = ("day", "tag", "key_id", "cost_micro")
_COLS = ", ".join(SPEND_COLUMNS)
_DAILY_COLS = ", ".join(DIMS + SUMS)
_ON_CONFLICT = f"ON CONFLICT ({', '.join(DIMS)}) DO UPDATE SET " + ", ".join(
    f"{s} = spend_daily.{s} + excluded.{s}" for s in SUMS
)
PG_COPY_SPEND = f"COPY spend ({_COLS}) FROM STDIN"
PG_COPY_TAGS = f"COPY spend_tags ({', '.join(TAG_COLUMNS)}) FROM STDIN"
PG_UPSERT_DAILY = (
    f"INSERT INTO spend_daily ({_DAILY_COLS}) SELECT * FROM unnest("
    "%s::date[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) " + _ON_CONFLICT
)
_UTC = dt.UTC

Groups = dict[tuple[Any, ...], list[int]]


def aggregate(rows: Sequence[LedgerRow], days: Sequence[Any]) -> Groups:
    """Sum a batch per (day, key, team, org, model) first: one rollup row per group."""
    groups: Groups = {}
    for r, day in zip(rows, days, strict=True):
        dims = (day, r.key_id or "", r.team_id or "", r.org_id or "", r.model or "")
        g = groups.get(dims)
        if g is None:
            groups[dims] = [1, r.prompt_tokens, r.cached_tokens, r.completion_tokens, r.cost_micro]
        else:
            g[0] += 1
            g[1] += r.prompt_tokens
            g[2] += r.cached_tokens
            g[3] += r.completion_tokens
            g[4] += r.cost_micro
    return groups


def _tags(tags: tuple[str, ...]) -> str | None:
    return orjson.dumps(tags).decode()


def _ms(v: float | None) -> float | None:
    """A time in ms, to the microsecond (the gateway queues it unrounded)."""
    return None if v is None else round(v, 3)


def write_batch(conn: Connection, rows: Sequence[LedgerRow]) -> None:
    """Write `rows` inside the caller's transaction on `conn`."""
    if conn.dialect.name == "postgresql":
        _write_postgres(conn, rows)
    else:
        _write_sqlite(conn, rows)


def _write_postgres(conn: Connection, rows: Sequence[LedgerRow]) -> None:
    pg: Any = conn.connection.driver_connection  # psycopg.Connection, in this transaction
    times = [dt.datetime.fromtimestamp(r.ts, _UTC) for r in rows]  # ts: Unix seconds
    days = [t.date() for t in times]
    with pg.cursor() as cur:
        with cur.copy(PG_COPY_SPEND) as copy:
            write = copy.write_row
            for r, t, day in zip(rows, times, days, strict=True):
                write((
                    t, day, r.request_id, r.org_id, r.team_id, r.key_id, r.end_user, r.model,
                    r.deployment, r.provider, r.prompt_tokens, r.cached_tokens,
                    r.completion_tokens, r.cost_micro, _ms(r.latency_ms), _ms(r.ttft_ms),
                    r.status, r.stream, r.usage_source, _tags(r.tags) if r.tags else None,
                ))  # fmt: skip
        tagged = [(r, day) for r, day in zip(rows, days, strict=True) if r.tags]
        if tagged:
            with cur.copy(PG_COPY_TAGS) as copy:
                for r, day in tagged:
                    for tag in r.tags:
                        copy.write_row((day, tag, r.key_id, r.cost_micro))
        groups = aggregate(rows, days)
        dims = list(zip(*groups.keys(), strict=True))
        sums = list(zip(*groups.values(), strict=True))
        cur.execute(PG_UPSERT_DAILY, [list(c) for c in (*dims, *sums)])


def _sqlite_row(r: LedgerRow, t: dt.datetime, day: str) -> tuple[Any, ...]:
    return (
        f"{t:%Y-%m-%d %H:%M:%S.%f}", day, r.request_id, r.org_id, r.team_id, r.key_id,
        r.end_user, r.model, r.deployment, r.provider, r.prompt_tokens, r.cached_tokens,
        r.completion_tokens, r.cost_micro, _ms(r.latency_ms), _ms(r.ttft_ms), r.status,
        int(r.stream), r.usage_source, _tags(r.tags) if r.tags else None,
    )  # fmt: skip


def _write_sqlite(conn: Connection, rows: Sequence[LedgerRow]) -> None:
    # SQLAlchemy's SQLite types store DateTime as "YYYY-MM-DD HH:MM:SS.ffffff", Date as ISO
    # text, JSON as text and booleans as 0/1: the same here.
    times = [dt.datetime.fromtimestamp(r.ts, _UTC) for r in rows]  # ts: Unix seconds
    days = [t.date().isoformat() for t in times]
    db: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    limit = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    spend = [_sqlite_row(r, t, day) for r, t, day in zip(rows, times, days, strict=True)]
    _insert_many(conn, f"INSERT INTO spend ({_COLS}) VALUES", spend, limit)
    tag_rows = [
        (day, tag, r.key_id, r.cost_micro)
        for r, day in zip(rows, days, strict=True)
        for tag in r.tags
    ]
    _insert_many(conn, f"INSERT INTO spend_tags ({', '.join(TAG_COLUMNS)}) VALUES", tag_rows, limit)
    groups = [(*dims, *sums) for dims, sums in aggregate(rows, days).items()]
    _insert_many(
        conn, f"INSERT INTO spend_daily ({_DAILY_COLS}) VALUES", groups, limit, _ON_CONFLICT
    )


def _insert_many(
    conn: Connection, head: str, rows: Sequence[tuple[Any, ...]], limit: int, tail: str = ""
) -> None:
    """`head (?, …), (?, …) … tail`: as many rows per statement as `limit` parameters allow
    (one statement unless a batch is very large)."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, limit // width)
    one = f"({', '.join('?' * width)})"
    for at in range(0, len(rows), per):
        chunk = rows[at : at + per]
        sql = f"{head} {', '.join([one] * len(chunk))} {tail}"
        conn.exec_driver_sql(sql, tuple(v for row in chunk for v in row))
