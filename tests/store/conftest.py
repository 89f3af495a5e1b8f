"""Every store test runs twice: on a SQLite file and on the machine's real PostgreSQL.

PostgreSQL isolation: a fresh schema per test (search_path), dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from slipstream.store import Store

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_schema() -> Iterator[str]:
    """Create a throwaway schema; yields its name; drops it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield name
    finally:
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store.open(f"sqlite:///{tmp_path / 'slip.db'}")
        yield s
        s.close()
        return
    for schema in pg_schema():
        s = Store.open(PG_URL, schema=schema)
        yield s
        s.close()
