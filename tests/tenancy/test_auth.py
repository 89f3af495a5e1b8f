"""Auth stage: who may call, with clear 401/403s, keys never logged, DB outages survived."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import pytest
from tests.gateway.fakes import Fleet, chat

from slipstream.gateway import GatewayError, Phase
from slipstream.store import Limits, Store
from slipstream.tenancy.request import TENANT
from slipstream.tenancy.runtime import Tenancy

from .conftest import MASTER, bearer, tenant_gateway


async def _call(gw, headers, model="chat"):
    try:
        return await gw.handle("chat/completions", chat(model), None, headers)
    except GatewayError as e:
        return e


def test_keys_are_checked_with_clear_errors(sqlite_store: Store) -> None:
    t = sqlite_store.tenants
    good, _rec = t.create_key(limits=Limits(models=("chat",)))
    revoked, r_rec = t.create_key()
    t.revoke_key(r_rec.id)
    expired, e_rec = t.create_key(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    rotated_old, ro = t.create_key()
    rotated_new, _ = t.rotate_key(ro.id)

    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        fleet = Fleet()
        gw = tenant_gateway(tenancy, fleet)
        ok = await _call(gw, bearer(good))
        assert not isinstance(ok, GatewayError)
        assert not isinstance(await _call(gw, {"x-api-key": good}), GatewayError)
        assert not isinstance(await _call(gw, bearer(MASTER), "other"), GatewayError)
        assert not isinstance(await _call(gw, bearer(rotated_new)), GatewayError)
        cases = [
            ({}, 401, "missing_api_key", "didn't provide an API key"),
            (bearer("not-a-key"), 401, "invalid_api_key", "Incorrect API key format"),
            (bearer("sk-ss-" + "x" * 43), 401, "invalid_api_key", "no such key"),
            (bearer(rotated_old), 401, "invalid_api_key", "no such key"),
            (bearer(revoked), 401, "revoked_api_key", f"{r_rec.id} has been revoked"),
            (bearer(expired), 401, "expired_api_key", f"{e_rec.id} expired at"),
        ]
        for headers, status, code, text in cases:
            e = await _call(gw, headers)
            assert isinstance(e, GatewayError), headers
            assert e.status == status and text in e.message
            assert getattr(e.error, "code", None) == code
            assert e.body()["error"]["code"] == code  # what the OpenAI SDK shows
        e = await _call(gw, bearer(good), "other")
        assert isinstance(e, GatewayError) and e.status == 403
        assert "may not use model 'other'" in e.message and "chat" in e.message
        assert (
            sum(len(p.calls) for p in fleet.providers.values()) == 4
        )  # refusals never go upstream
        await gw.aclose()
        await tenancy.aclose()

    asyncio.run(scenario())


def test_auth_is_off_without_a_master_key(sqlite_store: Store) -> None:
    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=None)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet())
        r = await gw.handle("chat/completions", chat(), None, {})
        assert r.response.status == 200
        await tenancy.aclose()

    asyncio.run(scenario())


def test_key_material_never_reaches_logs_or_errors(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    good, _ = sqlite_store.tenants.create_key(limits=Limits(models=("chat",), rpm=1))
    canary = "sk-ss-CANARY" + "q" * 37  # well-formed, unknown

    async def scenario() -> list[str]:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet())
        messages = []
        for headers, model in [
            (bearer(good), "chat"), (bearer(good), "chat"), (bearer(good), "other"),
            (bearer(canary), "chat"), (bearer(canary[:-3]), "chat"), ({"x-api-key": canary}, "chat"),
        ]:  # fmt: skip
            r = await _call(gw, headers, model)
            if isinstance(r, GatewayError):
                messages.append(r.message + repr(r.body()) + repr(r.headers()))
        ctx_dump = repr(gw)
        await gw.aclose()
        await tenancy.aclose()
        return [*messages, ctx_dump]

    with caplog.at_level(logging.DEBUG):
        texts = asyncio.run(scenario())
    assert len(texts) == 6 and caplog.records  # errors happened and the meter logged
    everything = caplog.text + "".join(texts) + "".join(repr(r.__dict__) for r in caplog.records)
    for secret in (good, canary, canary[:-3], good[6:20], canary[6:20]):
        assert secret not in everything


def test_cached_keys_keep_working_while_the_database_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    store = Store.open(f"sqlite:///{path}")
    good, _ = store.tenants.create_key()

    async def scenario() -> None:
        tenancy = Tenancy(store, master_key=MASTER)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet())
        store.engine.dispose()
        path.unlink()  # the database is gone: refreshes now fail
        for suffix in ("-wal", "-shm"):
            tmp_path.joinpath("keys.db" + suffix).unlink(missing_ok=True)
        assert not await asyncio.to_thread(tenancy.cache.refresh)
        r = await gw.handle("chat/completions", chat(), None, bearer(good))
        assert r.response.status == 200
        tenancy.writer.close(timeout_s=0.5)

    asyncio.run(scenario())


def test_request_context_carries_the_tenant_but_not_the_key(sqlite_store: Store) -> None:
    good, rec = sqlite_store.tenants.create_key(tags=("k",))
    seen = {}

    async def scenario() -> None:
        class Spy:
            name = "spy"
            phase = Phase.TRANSFORM

            async def pre(self, ctx) -> None:
                seen["t"] = ctx.get(TENANT)

        class Spying:
            name = "spying"

            def stages(self) -> list:
                return [Spy()]

        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet(), also=[Spying()])
        headers = {**bearer(good), "x-slipstream-tags": "a, b", "x-slipstream-end-user": "u1"}
        await gw.handle("chat/completions", chat(), None, headers)
        await tenancy.aclose()

    asyncio.run(scenario())
    t = seen["t"]
    assert t.key.id == rec.id and t.tags == ("k", "a", "b") and t.end_user == "u1"
    assert good not in repr(t)


def test_incremental_key_refresh_sees_new_rotated_and_revoked_keys(any_store: Store) -> None:
    from slipstream.store.keygen import hash_key
    from slipstream.tenancy.keycache import KeyCache

    t = any_store.tenants
    k1, r1 = t.create_key()
    k2, r2 = t.create_key()
    cache = KeyCache(any_store)
    assert cache.refresh() and len(cache.snapshot.keys) == 2
    k3, r3 = t.create_key()
    k1b, _ = t.rotate_key(r1.id)
    t.revoke_key(r2.id)
    assert cache.refresh() and cache._refreshes == 2  # an incremental refresh
    snap = cache.snapshot.keys
    assert hash_key(k1) not in snap and snap[hash_key(k1b)].id == r1.id
    assert snap[hash_key(k2)].revoked and snap[hash_key(k3)].id == r3.id
    assert len(snap) == 3
