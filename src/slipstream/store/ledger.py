"""The spend ledger: append-only batched inserts, and aggregate queries over it.

Each batch also updates the daily rollup in the same transaction, so totals by key, team,
org, model and day (and the budget refresh) read one row per day and group, however many
requests there were. Raw rows serve per-deployment / end-user reports and can be pruned
(`prune`) without losing totals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, func, select

from slipstream.store import schema as t
from slipstream.store.records import LedgerRow
from slipstream.store.rollup import write_batch

GROUPS = ("key", "team", "org", "model", "tag", "day", "deployment", "end_user")
_COLUMN = {"key": "key_id", "team": "team_id", "org": "org_id"}
ROLLED_UP = ("key", "team", "org", "model", "day")


class SpendStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, rows: Sequence[LedgerRow]) -> None:
        """One transaction per batch: either the whole batch is written or none of it (rows,
        tags and the daily rollup; see rollup.py for how little Python each row costs)."""
        if not rows:
            return
        with self.engine.begin() as c:
            write_batch(c, rows)

    def count(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(t.spend)).scalar_one())

    def request_ids(self) -> list[str]:
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(select(t.spend.c.request_id))]

    def window_totals(self, scope: str, since: dt.date) -> dict[str, int]:
        """Micro-dollars spent per key/team/org id from `since` (a day) on."""
        d = t.spend_daily.c
        col = d[_COLUMN[scope]]
        q = select(col, func.sum(d.cost_micro)).where(d.day >= since, col != "").group_by(col)
        with self.engine.connect() as c:
            return {r[0]: int(r[1] or 0) for r in c.execute(q)}

    def report(
        self,
        group_by: str,
        since: dt.date | None = None,
        until: dt.date | None = None,
        where: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Totals per group, largest spend first: cost, requests and tokens.

        `where` filters on key/team/org/model, e.g. group_by="day", where={"key": id} is
        that key's daily time series.
        """
        if group_by not in GROUPS:
            raise ValueError(f"group_by must be one of {list(GROUPS)}")
        where = {k: v for k, v in (where or {}).items() if v}
        if group_by == "tag":
            if where:
                raise ValueError("tag totals cannot be filtered by key/team/org/model")
            return self._by_tag(since, until)
        bad = set(where) - {"key", "team", "org", "model"}
        if bad:
            raise ValueError(f"cannot filter by {sorted(bad)}")
        rolled = group_by in ROLLED_UP
        s = t.spend_daily.c if rolled else t.spend.c
        col = s[_COLUMN.get(group_by, group_by)]
        q = select(
            col.label("group"),
            (func.sum(s.requests) if rolled else func.count()).label("requests"),
            func.sum(s.prompt_tokens).label("prompt_tokens"),
            func.sum(s.cached_tokens).label("cached_tokens"),
            func.sum(s.completion_tokens).label("completion_tokens"),
            func.sum(s.cost_micro).label("cost_micro"),
        ).group_by(col)
        if since is not None:
            q = q.where(s.day >= since)
        if until is not None:
            q = q.where(s.day <= until)
        for name, value in where.items():
            q = q.where(s[_COLUMN.get(name, name)] == value)
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
        for r in rows:
            for k in ("prompt_tokens", "cached_tokens", "completion_tokens", "cost_micro"):
                r[k] = int(r[k] or 0)
            r["requests"] = int(r["requests"] or 0)
            if isinstance(r["group"], dt.date):
                r["group"] = r["group"].isoformat()
            elif r["group"] == "":
                r["group"] = None
        return sorted(rows, key=lambda r: (-r["cost_micro"], str(r["group"])))

    def prune(self, before: dt.date) -> int:
        """Delete raw rows of days before `before` (totals stay in the rollup)."""
        with self.engine.begin() as c:
            n = c.execute(delete(t.spend).where(t.spend.c.day < before)).rowcount
            c.execute(delete(t.spend_tags).where(t.spend_tags.c.day < before))
        return int(n or 0)

    def _by_tag(self, since: dt.date | None, until: dt.date | None) -> list[dict[str, Any]]:
        st = t.spend_tags.c
        q = select(
            st.tag.label("group"),
            func.count().label("requests"),
            func.sum(st.cost_micro).label("cost_micro"),
        ).group_by(st.tag)
        if since is not None:
            q = q.where(st.day >= since)
        if until is not None:
            q = q.where(st.day <= until)
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
        for r in rows:
            r["cost_micro"] = int(r["cost_micro"] or 0)
        return sorted(rows, key=lambda r: (-r["cost_micro"], str(r["group"])))
