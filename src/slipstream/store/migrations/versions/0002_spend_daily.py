"""Daily spend rollup: totals per (day, key, team, org, model), upserted with each batch.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spend_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("team_id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_micro", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spend_daily")
