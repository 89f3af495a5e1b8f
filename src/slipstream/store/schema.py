"""The tenancy tables (SQLAlchemy Core): orgs → teams → keys, and the append-only spend ledger.

Money is integer micro-dollars (1 USD = 1_000_000) everywhere, so sums are exact. The ledger
carries a `day` column written by the gateway: grouping by day is then the same portable
`GROUP BY` on SQLite and PostgreSQL, and (day, key) is the index every budget query uses.
Tags live in `spend_tags`, one row per (request, tag) with the cost copied, so "spend by tag"
is a plain SUM with no JSON functions and no join.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("budget_micro", BigInteger, nullable=True),
    Column("budget_window", String(10), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("org_id", String(40), nullable=True, index=True),
    Column("models", JSON, nullable=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("max_parallel", Integer, nullable=True),
    Column("budget_micro", BigInteger, nullable=True),
    Column("budget_window", String(10), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # SHA-256 hex, never the key
    Column("hint", String(16), nullable=False),  # "sk-ss-ab…wxyz": enough to recognise, not use
    Column("name", String(200), nullable=True),
    Column("team_id", String(40), nullable=True, index=True),
    Column("org_id", String(40), nullable=True),
    Column("models", JSON, nullable=True),  # None = every model
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("max_parallel", Integer, nullable=True),
    Column("budget_micro", BigInteger, nullable=True),
    Column("budget_window", String(10), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("tags", JSON, nullable=True),
    Column("metadata", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

spend = Table(
    "spend",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("day", Date, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("org_id", String(40), nullable=True),
    Column("team_id", String(40), nullable=True),
    Column("key_id", String(40), nullable=True),
    Column("end_user", String(200), nullable=True),
    Column("model", String(200), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("provider", String(40), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=True),
    Column("ttft_ms", Float, nullable=True),
    Column("status", Integer, nullable=False),
    Column("stream", Boolean, nullable=False, default=False),
    Column("usage_source", String(10), nullable=False, default="upstream"),  # or "counted"
    Column("tags", JSON, nullable=True),
    Index("ix_spend_ts", "ts"),
    Index("ix_spend_day_key", "day", "key_id"),
    Index("ix_spend_day_team", "day", "team_id"),
)

spend_tags = Table(
    "spend_tags",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("day", Date, nullable=False),
    Column("tag", String(200), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("cost_micro", BigInteger, nullable=False),
    Index("ix_spend_tags_day_tag", "day", "tag"),
)

# Pre-aggregated per day: totals and budget refreshes read this, never the raw ledger, so a
# year of rows costs a year of days. Ids are '' (not NULL) so the composite key is unique.
spend_daily = Table(
    "spend_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("key_id", String(40), primary_key=True),
    Column("team_id", String(40), primary_key=True),
    Column("org_id", String(40), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_micro", BigInteger, nullable=False),
)
