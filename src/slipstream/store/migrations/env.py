"""Alembic environment: always run online, on the connection `slipstream.store` hands over."""

from __future__ import annotations

from alembic import context

from slipstream.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
