"""The spend check of a run: did keys, limits and spend really run on every request?

Before the servers stop, the run waits until the bench key's total in `GET /admin/spend`
stops growing (the ledger writer flushes every `spend_flush_s`; `slipstream serve` also
flushes on SIGTERM, but the live totals are read while it still serves). After the
servers stopped, the raw ledger rows of the bench key are counted in the database and set
against the requests its clients saw answered (probe, warm-up, wrk, streams). wrk stops with
requests in flight, which are served and billed but not counted by wrk: up to one row per
connection more than answered per wrk run is expected; fewer rows than answered would mean
lost spend. Then the run's databases and Redis keys go."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter
from typing import Any

import httpx
from rich.console import Console

from _gateway.names import TENANCY
from _gateway.processes import Server
from _gateway.tenancy import BENCH_MASTER_KEY, BenchDB

SETTLE_QUIET_S = 1.5  # the ledger count unchanged this long (3 flush intervals): settled
SETTLE_MAX_S = 15.0


class SpendCheck:
    """Mixed into `Bench`, whose state it reads."""

    args: argparse.Namespace
    console: Console
    servers: dict[str, Server]
    sent: Counter[str]
    dbs: dict[str, BenchDB]
    keys: dict[str, dict[str, str]]
    ready: set[str]
    res: dict[str, Any]

    def spend_live(self) -> None:
        """Before the servers stop: wait until the bench key's ledger stops growing (the writer
        flushes every `spend_flush_s`), then keep its totals from `GET /admin/spend`."""
        for name in TENANCY:
            if name in self.keys and name in self.servers:
                self._settle(name)

    def _settle(self, name: str) -> None:
        url, key_id = self.servers[name].url, self.keys[name]["key_id"]
        t0 = time.monotonic()
        live: dict[str, Any] | None = None
        try:
            seen, since = -1, t0
            while time.monotonic() - t0 < SETTLE_MAX_S:
                live = admin_spend(url, key_id)
                n = live["requests"] if live else 0
                if n != seen:
                    seen, since = n, time.monotonic()
                elif time.monotonic() - since >= SETTLE_QUIET_S:
                    break
                time.sleep(0.1)
        except httpx.HTTPError as exc:
            live = {"error": str(exc)}
        entry = self.res.setdefault("spend", {}).setdefault(name, {})
        entry["admin_api"] = live
        entry["settle_s"] = round(time.monotonic() - t0, 2)

    def spend_final(self) -> None:
        """After every server stopped (spend writers flush on exit): the raw ledger rows of
        each database target against the requests its clients saw answered; then drop the
        databases and the run's Redis keys. Called from `finally`: also after a failure."""
        for name, db in self.dbs.items():
            if name not in self.ready:
                continue
            entry = self.res.setdefault("spend", {}).setdefault(name, {})
            entry["client_counted_requests"] = self.sent[name]
            try:
                if name == "litellm-db":
                    entry.update(litellm_ledger(db))
                elif name in self.keys:
                    entry.update(ledger(db, self.keys[name]["key_id"]))
            except Exception as exc:  # a missing table, a dropped connection: say so
                entry["error"] = str(exc)
            if entry.get("rows") is not None and self.sent[name]:
                entry["rows_per_request"] = round(entry["rows"] / self.sent[name], 4)
                # wrk's requests in flight at each stop are served and billed, never counted.
                entry["rows_minus_answered"] = entry["rows"] - self.sent[name]
            self.console.print(
                f"  spend {name}: {entry.get('rows', '?')} ledger rows, "
                f"${entry.get('cost_usd', 0):.6f}, {self.sent[name]:,} requests answered"
            )
        self.cleanup()

    def cleanup(self) -> None:
        for name, db in self.dbs.items():
            try:
                db.drop()
            except Exception as exc:
                self.res["notes"].append(f"could not drop {name}'s database {db.name}: {exc}")
        for info in self.keys.values():
            if self.args.tenancy_store == "postgres":
                with contextlib.suppress(Exception):
                    redis_cleanup(self.args.redis_url, [info["key_id"], info["team_id"]])


def admin_spend(base_url: str, key_id: str) -> dict[str, Any] | None:
    """The key's totals from `GET /admin/spend` (the daily rollup, one flush behind at most)."""
    admin = {"authorization": f"Bearer {BENCH_MASTER_KEY}"}
    r = httpx.get(
        f"{base_url}/admin/spend", params={"group_by": "key", "key": key_id}, headers=admin
    )
    r.raise_for_status()
    rows = r.json()["data"]
    return rows[0] if rows else None


def ledger(db: BenchDB, key_id: str) -> dict[str, Any]:
    """Raw ledger rows of the bench key: count, by status and stream flag, tokens and cost."""
    rows = db.query(
        "SELECT status, stream, usage_source, count(*) AS n, sum(cost_micro) AS cost,"
        " sum(CASE WHEN cost_micro > 0 THEN 1 ELSE 0 END) AS priced,"
        " sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion"
        " FROM spend WHERE key_id = :k GROUP BY status, stream, usage_source",
        k=key_id,
    )
    n = sum(int(r["n"]) for r in rows)
    cost = sum(int(r["cost"] or 0) for r in rows)
    return {
        "rows": n,
        "rows_with_cost": sum(int(r["priced"] or 0) for r in rows),
        "cost_usd": round(cost / 1e6, 6),
        "prompt_tokens": sum(int(r["prompt"] or 0) for r in rows),
        "completion_tokens": sum(int(r["completion"] or 0) for r in rows),
        "by_status": {
            f"{r['status']}{' stream' if r['stream'] else ''} {r['usage_source']}": int(r["n"])
            for r in rows
        },
    }


def litellm_ledger(db: BenchDB) -> dict[str, Any]:
    rows = db.query('SELECT count(*) AS n, sum(spend) AS cost FROM "LiteLLM_SpendLogs"')
    return {"rows": int(rows[0]["n"]), "cost_usd": float(rows[0]["cost"] or 0.0)}


def redis_cleanup(url: str, ids: list[str]) -> int:
    """Delete the run's rate-limit and budget keys from Redis (budgets would live 35 days)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    n = 0
    with contextlib.suppress(redis.RedisError):
        for ident in ids:
            for k in client.scan_iter(match=f"slipstream:*{ident}*", count=1000):
                n += client.delete(k)
    return n
