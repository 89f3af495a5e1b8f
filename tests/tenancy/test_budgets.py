"""Budgets: bursts cannot overrun by more than one request's worst case (one replica, or two
sharing Redis), windows, refusals as 429, and soft-alert webhooks at thresholds."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import redis as sync_redis
from tests.gateway.fakes import Fleet, Step, chat

from slipstream.config.schema import TenancyConfig
from slipstream.gateway import Gateway, GatewayError
from slipstream.store import Limits, Store
from slipstream.tenancy.admission import BudgetPlan, BudgetScope, Refusal, Reservation
from slipstream.tenancy.books import window_end
from slipstream.tenancy.local import LocalAdmission
from slipstream.tenancy.local.budgets import MemoryBudgets
from slipstream.tenancy.runtime import Tenancy

from .conftest import MASTER, REDIS_URL, bearer, redis_client, tenant_gateway

PER_TOKEN = {"input_per_mtok": 1000, "output_per_mtok": 1000}  # 1000 micro-dollars per token
ACTUAL = 7 * 1000  # the fake upstream reports 3 + 4 tokens
MAX_TOKENS = 10
WORST = (1 + MAX_TOKENS) * 1000  # prompt "hi" estimates at 1 token
BUDGET = 50_000


async def _wave(gws: list[Gateway], fleets: list[Fleet], key: str, n: int) -> tuple[int, int]:
    """n concurrent requests held upstream until all were admitted or refused."""
    gate = asyncio.Event()
    for f in fleets:
        f["a"].default = Step(gate=gate)
    body = chat(max_tokens=MAX_TOKENS)
    tasks = [
        asyncio.create_task(gws[i % len(gws)].handle("chat/completions", body, None, bearer(key)))
        for i in range(n)
    ]
    await asyncio.sleep(0.1)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, GatewayError)]
    assert all(r.status == 429 and "Budget exceeded" in r.message for r in refused)
    assert all(getattr(r.error, "code", None) == "budget_exceeded" for r in refused)
    return n - len(refused), len(refused)


def _cleanup_redis(ident: str) -> None:
    r = sync_redis.Redis.from_url(REDIS_URL)
    for k in r.scan_iter(f"*{ident}*"):
        r.delete(k)
    r.close()


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_burst_cannot_overrun_a_budget_by_more_than_one_worst_case(
    sqlite_store: Store, replicas: int
) -> None:
    key, rec = sqlite_store.tenants.create_key(
        limits=Limits(budget_micro=BUDGET, budget_window="daily")
    )

    async def scenario() -> tuple[int, int]:
        tenancies = [
            Tenancy(sqlite_store, master_key=MASTER, redis=redis_client() if replicas > 1 else None)
            for _ in range(replicas)
        ]
        fleets = [Fleet() for _ in tenancies]
        gws = [
            tenant_gateway(t, f, prices=PER_TOKEN) for t, f in zip(tenancies, fleets, strict=True)
        ]
        for t in tenancies:
            await t.start()
        admitted = 0
        for _ in range(6):
            a, _refused = await _wave(gws, fleets, key, 20)
            admitted += a
            if a == 0:
                break
        for t in tenancies:
            await t.aclose()
        return admitted, sum(len(f["a"].calls) for f in fleets)

    try:
        admitted, upstream_calls = asyncio.run(scenario())
    finally:
        _cleanup_redis(rec.id)
    spent = sqlite_store.spend.report("key")[0]["cost_micro"]
    assert spent == admitted * ACTUAL == upstream_calls * ACTUAL
    assert BUDGET <= spent <= BUDGET + WORST  # reached the budget, overran by < 1 worst case
    # the first wave alone admits only what its reservations allow: 5 x 11000 < 50000 + 11000
    assert admitted <= (BUDGET + WORST) // ACTUAL


def test_budget_windows_and_team_and_org_scopes() -> None:
    now = dt.datetime(2026, 1, 31, 23, 0, tzinfo=dt.UTC)
    book = MemoryBudgets(now=lambda: now)
    adm = LocalAdmission(budgets=book)
    scopes = [BudgetScope("key:k", 100, "monthly"), BudgetScope("org:o", 50, "daily")]

    async def reserve(worst: int) -> Reservation | Refusal | None:
        return (await adm.admit([], 0, "r", BudgetPlan(scopes, worst))).budget

    async def scenario() -> None:
        nonlocal now
        r = await reserve(30)
        assert isinstance(r, Reservation)
        await adm.settle([], 0, 0, "r", r, 60)
        refused = await reserve(1)
        assert isinstance(refused, Refusal) and refused.scope.name == "org:o"
        assert refused.reset_at == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
        now = dt.datetime(2026, 2, 1, 0, 1, tzinfo=dt.UTC)  # new day and new month
        assert isinstance(await reserve(1), Reservation)
        now = dt.datetime(2026, 3, 5, tzinfo=dt.UTC)
        adm.prune()  # books of windows that started over 32 days ago are gone
        assert book.spent == {}
        assert sorted(book.reserved) == ["key:k:2026-02-01", "org:o:2026-02-01"]

    asyncio.run(scenario())
    assert window_end("weekly", dt.datetime(2026, 11, 26, tzinfo=dt.UTC)).date() == dt.date(
        2026, 11, 30
    )


def test_budgets_are_seeded_from_the_ledger_at_start(sqlite_store: Store) -> None:
    """A restarted gateway knows what was already spent this window."""
    key, _rec = sqlite_store.tenants.create_key(limits=Limits(budget_micro=BUDGET))

    async def run_once() -> list[Any]:
        t = Tenancy(sqlite_store, master_key=MASTER)
        gw = tenant_gateway(t, Fleet(), prices=PER_TOKEN)
        await t.start()
        out = []
        for _ in range(5):
            try:
                out.append(
                    await gw.handle(
                        "chat/completions", chat(max_tokens=MAX_TOKENS), None, bearer(key)
                    )
                )
            except GatewayError as e:
                out.append(e)
        await t.aclose()
        return out

    first = asyncio.run(run_once())
    assert all(not isinstance(r, GatewayError) for r in first)  # 5 x 7000 = 35000
    second = asyncio.run(run_once())
    ok = [r for r in second if not isinstance(r, GatewayError)]
    assert len(ok) == 3  # 35000 → 42000 → 49000 → 56000, then refused
    assert sqlite_store.spend.report("key")[0]["cost_micro"] == 8 * ACTUAL


class Receiver:
    """A real local HTTP server recording JSON POSTs."""

    def __init__(self) -> None:
        events = self.events = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers["content-length"])
                events.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_soft_alerts_post_once_per_threshold(sqlite_store: Store) -> None:
    key, rec = sqlite_store.tenants.create_key(limits=Limits(budget_micro=BUDGET))
    hook = Receiver()
    cfg = TenancyConfig(budget_alert_url=hook.url, budget_alert_thresholds=(0.5, 0.8, 1.0))

    async def scenario() -> None:
        t = Tenancy(sqlite_store, master_key=MASTER, config=cfg)
        gw = tenant_gateway(t, Fleet(), prices=PER_TOKEN)
        await t.start()
        for _ in range(9):
            with contextlib.suppress(GatewayError):
                await gw.handle("chat/completions", chat(max_tokens=MAX_TOKENS), None, bearer(key))
        await t.aclose()

    try:
        asyncio.run(scenario())
    finally:
        hook.close()
    assert sorted(e["threshold"] for e in hook.events) == [0.5, 0.8, 1.0]
    first = min(hook.events, key=lambda e: e["threshold"])
    assert first["scope"] == f"key:{rec.id}" and first["budget_usd"] == 0.05
    assert first["spent_usd"] >= 0.025


def test_streams_reserve_and_settle_like_other_requests(sqlite_store: Store) -> None:
    """A stream is admitted against the budget and charged when it ends."""
    key, _rec = sqlite_store.tenants.create_key(limits=Limits(budget_micro=BUDGET))

    async def scenario() -> list[object]:
        t = Tenancy(sqlite_store, master_key=MASTER)
        gw = tenant_gateway(t, Fleet(), prices=PER_TOKEN)
        await t.start()
        out: list[object] = []
        for _ in range(10):
            try:
                s = await gw.handle_stream(
                    "chat/completions", chat(stream=True, max_tokens=MAX_TOKENS), None, bearer(key)
                )
            except GatewayError as e:
                out.append(e.status)
                continue
            async for _ in s:
                pass
            out.append(200)
        await t.aclose()
        return out

    statuses = asyncio.run(scenario())
    # each stream costs 3 + 3 tokens = 6000: admitted while spent < 50000 → 9 streams
    assert statuses == [200] * 9 + [429]
    assert sqlite_store.spend.report("key")[0]["cost_micro"] == 9 * 6000


def test_two_replicas_send_each_alert_once(redis_ns: str) -> None:
    from slipstream.tenancy.admission import Crossing
    from slipstream.tenancy.alerts import BudgetAlerts

    hook = Receiver()
    scope = BudgetScope(f"key:{redis_ns}", 1000, "daily")
    crossing = Crossing(scope, f"key:{redis_ns}:2026-01-01", 400, 900)  # crosses 0.5 and 0.8

    async def scenario() -> None:
        replicas = [BudgetAlerts(hook.url, (0.5, 0.8, 1.0), redis_client()) for _ in range(2)]
        for a in replicas:
            a.check([crossing])
            a.check([crossing])  # the same crossing again on the same replica
        for a in replicas:
            await a.aclose()
            assert a._redis is not None
            await a._redis.aclose()

    try:
        asyncio.run(scenario())
    finally:
        hook.close()
        r = sync_redis.Redis.from_url(REDIS_URL)
        for k in r.scan_iter(f"slipstream:alert:*{redis_ns}*"):
            r.delete(k)
        r.close()
    assert sorted(e["threshold"] for e in hook.events) == [0.5, 0.8]
