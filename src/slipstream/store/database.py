"""Opening the database: SQLite file by default, PostgreSQL by URL; migrations run on open.

The engine is synchronous on purpose: the gateway never touches it on the request path, only
from background threads (key refresh, ledger flush) and the admin API via `asyncio.to_thread`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event

DEFAULT_URL = "sqlite:///slipstream.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` URLs and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str | None = None, *, schema: str | None = None, **kw: Any) -> Engine:
    """An engine with sane pools; `schema` sets PostgreSQL's search_path (tests isolate by it)."""
    url = normalise_url(url or DEFAULT_URL)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the ledger writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    kw.setdefault("pool_size", 5)
    kw.setdefault("max_overflow", 5)
    kw.setdefault("pool_pre_ping", True)
    return create_engine(url, connect_args=connect_args, **kw)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent; run at start-up)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
