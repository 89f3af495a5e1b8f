"""Persistent tenancy state: orgs, teams, virtual keys and the spend ledger.

SQLite by default, PostgreSQL by URL, one schema (Alembic). `Store.open` migrates on start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from slipstream.store.database import DEFAULT_URL, migrate, open_engine
from slipstream.store.ledger import SpendStore
from slipstream.store.records import KeyRecord, LedgerRow, Limits, OrgRecord, TeamRecord
from slipstream.store.tenants import NotFound, TenantStore


@dataclass(frozen=True)
class Store:
    engine: Engine
    tenants: TenantStore
    spend: SpendStore
    url: str | None = None  # what it was opened with: the ledger's writer process opens it too
    schema: str | None = None

    @classmethod
    def open(cls, url: str | None = None, *, schema: str | None = None) -> Store:
        engine = open_engine(url, schema=schema)
        migrate(engine)
        return cls(engine, TenantStore(engine), SpendStore(engine), url or DEFAULT_URL, schema)

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "DEFAULT_URL",
    "KeyRecord",
    "LedgerRow",
    "Limits",
    "NotFound",
    "OrgRecord",
    "Store",
    "TeamRecord",
]
