"""The initial tenancy schema: orgs, teams, keys, spend ledger, spend tags.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_TS = sa.DateTime(timezone=True)


def _limits() -> list[sa.Column]:
    return [
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("max_parallel", sa.Integer, nullable=True),
        sa.Column("budget_micro", sa.BigInteger, nullable=True),
        sa.Column("budget_window", sa.String(10), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("budget_micro", sa.BigInteger, nullable=True),
        sa.Column("budget_window", sa.String(10), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("org_id", sa.String(40), nullable=True),
        *_limits(),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_teams_org_id", "teams", ["org_id"])
    op.create_table(
        "keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("org_id", sa.String(40), nullable=True),
        *_limits(),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("tags", sa.JSON, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_keys_team_id", "keys", ["team_id"])
    op.create_table(
        "spend",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("org_id", sa.String(40), nullable=True),
        sa.Column("team_id", sa.String(40), nullable=True),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("end_user", sa.String(200), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("deployment", sa.String(200), nullable=True),
        sa.Column("provider", sa.String(40), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_micro", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("usage_source", sa.String(10), nullable=False),
        sa.Column("tags", sa.JSON, nullable=True),
    )
    op.create_index("ix_spend_ts", "spend", ["ts"])
    op.create_index("ix_spend_day_key", "spend", ["day", "key_id"])
    op.create_index("ix_spend_day_team", "spend", ["day", "team_id"])
    op.create_table(
        "spend_tags",
        sa.Column("id", _PK, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("cost_micro", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_spend_tags_day_tag", "spend_tags", ["day", "tag"])


def downgrade() -> None:
    for table in ("spend_tags", "spend", "keys", "teams", "orgs"):
        op.drop_table(table)
