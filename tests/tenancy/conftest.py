"""Fixtures for tenancy tests: a store (SQLite file, or PostgreSQL where it matters), a clean
Redis namespace, and a gateway wired with the tenancy stages over scripted providers."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from tests.gateway.fakes import Fleet
from tests.store.conftest import PG_URL, pg_schema

from slipstream.config import parse_config
from slipstream.gateway import Feature, Gateway
from slipstream.store import Store
from slipstream.tenancy.runtime import Tenancy

MASTER = "sk-master-for-tests-0123456789"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'slip.db'}")
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store.open(f"sqlite:///{tmp_path / 'slip.db'}")
        yield s
        s.close()
        return
    for schema in pg_schema():
        s = Store.open(PG_URL, schema=schema)
        yield s
        s.close()


@pytest.fixture
def redis_ns() -> Iterator[str]:
    """A unique key prefix; every key under it is deleted afterwards."""
    ns = f"t{uuid.uuid4().hex[:10]}:"
    yield ns
    r = sync_redis.Redis.from_url(REDIS_URL)
    for k in r.scan_iter("slipstream:*"):
        if ns.encode() in k:
            r.delete(k)
    r.close()


def redis_client() -> aioredis.Redis:
    return aioredis.from_url(REDIS_URL)


def models(**dep_extra: Any) -> list[dict[str, Any]]:
    d = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "name": "a",
        "api_base": "http://x",
        **dep_extra,
    }
    return [
        {"name": "chat", "deployments": [d]},
        {"name": "other", "deployments": [{**d, "name": "b"}]},
    ]


def tenant_gateway(
    tenancy: Tenancy,
    fleet: Fleet,
    factory: Any = None,
    *,
    also: Sequence[Feature] = (),
    **dep_extra: Any,
) -> Gateway:
    """A gateway with the tenancy feature (and `also`, after it) over scripted providers."""
    config = parse_config({"models": models(**dep_extra)})
    return Gateway(
        config, factory or fleet.factory, rng=random.Random(3), features=[tenancy, *also]
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def r() -> Iterator[sync_redis.Redis]:
    """A plain (synchronous) Redis client, to read the shared books back."""
    client = sync_redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()
