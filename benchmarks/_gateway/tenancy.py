"""Keys, limits and spend for the benchmark: databases, the bench key and the ledger check.

  slipstream-tenancy  the `slipstream` config plus `master_key`, `database_url` and (with the
                      default `--tenancy-store postgres`) `redis_url`: a fresh PostgreSQL
                      database per run (dropped at the end) and Redis for limits and budgets,
                      the distributed case; `--tenancy-store sqlite` uses a SQLite file in the
                      run's logs folder and in-process limits instead. Its clients send a
                      virtual key made through `POST /admin/keys`, with limits and a budget far
                      above what a run can use, so every stage runs and none refuses.
  baseline-tenancy    the same for the --baseline-src code: its own fresh database (or SQLite
                      file), its own team and key; the same Redis (ids are random, no clash)
  litellm-db          LiteLLM with a master key and `database_url` (a fresh PostgreSQL
                      database): its spend logging needs Prisma's engine binaries, which
                      download from binaries.prisma.sh at first start; `prisma_missing()` says
                      up front when they are absent and that host cannot be reached.

spend.py reads the ledger back after the run.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from _gateway.names import TENANCY

BENCH_MASTER_KEY = "sk-slipstream-bench-master"
ADMIN_PROBE_PATH = "/admin/keys"
PRISMA_HOST = "binaries.prisma.sh"
# Far above anything one run can use: no limit or budget may ever refuse a request.
HUGE = 1_000_000_000
BUDGET_USD = 1_000_000
# The same price for both gateways' deployment, so spend is really computed (USD per 1M tokens).
INPUT_PER_MTOK, OUTPUT_PER_MTOK = 0.15, 0.6


def _sa_url(url: str) -> str:
    """SQLAlchemy URL with the psycopg 3 driver for `postgresql://` URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _with_database(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def pg_missing(admin_url: str) -> str | None:
    """Why PostgreSQL cannot be used at `admin_url` (None if a connection works)."""
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: skip the target, say why
        return f"PostgreSQL at {admin_url} not reachable: {str(exc).strip()[:200]}"
    return None


def redis_missing(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"Redis at {url} not reachable: {exc}"
    return None


@dataclass
class BenchDB:
    """A database made for one target of one run: a fresh PostgreSQL database or a SQLite file."""

    url: str  # as the gateway's config takes it
    admin_url: str | None = None  # PostgreSQL: where CREATE/DROP DATABASE run
    name: str | None = None
    dropped: bool = False

    @classmethod
    def postgres(cls, admin_url: str, prefix: str) -> BenchDB:
        import psycopg

        name = f"{prefix}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}_{os.getpid()}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return cls(_with_database(admin_url, name), admin_url, name)

    @classmethod
    def sqlite(cls, path: Path) -> BenchDB:
        path.unlink(missing_ok=True)
        return cls(f"sqlite:///{path}")

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        from sqlalchemy import create_engine, text

        engine = create_engine(_sa_url(self.url))
        try:
            with engine.connect() as c:
                return [dict(r._mapping) for r in c.execute(text(sql), params)]
        finally:
            engine.dispose()

    def drop(self) -> None:
        """Drop a PostgreSQL database (idempotent); a SQLite file stays with the run's logs."""
        if self.dropped or self.admin_url is None:
            return
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.dropped = True


def prisma_missing(litellm_bin: Path) -> str | None:
    """Why LiteLLM's database mode cannot start here, found without starting it (None: try)."""
    py = litellm_bin.parent / "python"
    if not (litellm_bin.parent / "prisma").exists():
        return f"the prisma CLI is not in {litellm_bin.parent} (pip install 'litellm[extra_proxy]')"
    found = {
        "query-engine": os.environ.get("PRISMA_QUERY_ENGINE_BINARY"),
        "schema-engine": os.environ.get("PRISMA_SCHEMA_ENGINE_BINARY"),
    }
    home = Path.home()
    roots = [home / ".cache" / "prisma", home / ".cache" / "prisma-python"]
    roots += list(py.parent.parent.glob("lib/python*/site-packages/prisma"))
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*engine*"):  # query-engine, libquery_engine-*.so.node, ...
            name = path.name.replace("_", "-")
            for kind in found:
                if found[kind] is None and kind in name and _is_binary(path):
                    found[kind] = str(path)
    absent = [k for k, v in found.items() if not v or not Path(v).exists()]
    if not absent:
        return None
    try:
        socket.getaddrinfo(PRISMA_HOST, 443)
    except OSError as exc:
        return (
            f"Prisma's {' and '.join(absent)} binaries are not installed (looked in "
            f"{', '.join(str(r) for r in roots)} and PRISMA_*_ENGINE_BINARY) and download from "
            f"{PRISMA_HOST} at first start, which does not resolve on this machine ({exc}); "
            "LiteLLM's Postgres spend logging cannot start offline"
        )
    return None  # they can be downloaded: let LiteLLM try


def _is_binary(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1_000_000  # not a .js/.d.ts of that name


def preflight(
    targets: list[str], store: str, pg_url: str, redis_url: str, litellm_bin: Path
) -> dict[str, str]:
    """Why the asked-for database targets cannot run here, per target (cheap checks only)."""
    out: dict[str, str] = {}
    tenancy_pg = [t for t in TENANCY if t in targets] if store == "postgres" else []
    pg = pg_missing(pg_url) if tenancy_pg or "litellm-db" in targets else None
    if tenancy_pg:
        reason = pg or redis_missing(redis_url)
        if reason:
            out |= dict.fromkeys(tenancy_pg, reason)
    if "litellm-db" in targets and litellm_bin.exists():
        reason = pg or prisma_missing(litellm_bin)
        if reason:
            out["litellm-db"] = reason
    return out


def admin_probe(client: httpx.Client, url: str) -> bool:
    r = client.get(url + ADMIN_PROBE_PATH, headers={"authorization": f"Bearer {BENCH_MASTER_KEY}"})
    return r.status_code == 200


def create_bench_key(base_url: str) -> dict[str, Any]:
    """A team and a virtual key for it, both with limits and budgets no run can reach."""
    admin = {"authorization": f"Bearer {BENCH_MASTER_KEY}"}
    limits = {"rpm": HUGE, "tpm": HUGE, "max_parallel": 100_000}
    budget = {"budget_usd": BUDGET_USD, "budget_window": "monthly"}
    with httpx.Client(base_url=base_url, headers=admin, timeout=30.0) as c:
        team = c.post("/admin/teams", json={"name": "bench", **limits, **budget})
        team.raise_for_status()
        body = {"team": "bench", "models": ["chat"], "name": "gateway_overhead", **limits, **budget}
        r = c.post("/admin/keys", json=body)
        r.raise_for_status()
    key = r.json()
    return {"key": key["key"], "key_id": key["id"], "team_id": team.json()["id"]}
