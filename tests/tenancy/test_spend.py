"""Prices and spend: exact micro-dollar costs, streams priced like non-streams, cached tokens
at their price, cancelled streams billed for what was generated, ledger rows complete."""

from __future__ import annotations

import asyncio
import inspect
import random
import re
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_UP, Decimal

import pytest
from tests.gateway.fakes import Fleet, Step, chat

from slipstream.config import DeploymentConfig
from slipstream.providers.base import (
    ProviderRequest,
    ProviderResponse,
    StreamChunk,
    Usage,
)
from slipstream.store import Limits, Store
from slipstream.tenancy.ledger import LedgerRow
from slipstream.tenancy.prices import Price, PriceTable
from slipstream.tenancy.runtime import Tenancy
from slipstream.tenancy.stages.spend import SpendStage

from .conftest import MASTER, bearer, tenant_gateway

USAGE = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=600)
PRICES = {"input_per_mtok": 2.5, "cached_input_per_mtok": 1.25, "output_per_mtok": 10.0}


class UsageProvider:
    """An upstream that reports the same usage streamed or not."""

    name = "openai"

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        return ProviderResponse(body={"choices": []}, usage=USAGE)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[StreamChunk]:
        self.last_body = request.body
        for i in range(3):
            yield StreamChunk(data={"choices": [{"index": 0, "delta": {"content": f"t{i}"}}]})
        yield StreamChunk(data={"choices": []}, usage=USAGE)

    async def aclose(self) -> None:
        return None


def test_cost_is_exact_and_cached_tokens_get_their_price() -> None:
    p = Price(Decimal("2.5"), Decimal("10"), Decimal("1.25"))
    assert p.cost_micro(USAGE) == 400 * 2.5 + 600 * 1.25 + 200 * 10  # 3750 micro-dollars
    assert Price(Decimal("2.5"), Decimal("10")).cost_micro(USAGE) == 1000 * 2.5 + 200 * 10
    assert Price(Decimal("0.15"), Decimal("0.6")).cost_micro(Usage(7, 3)) == 3  # 2.85 → 3
    assert p.worst_case_micro(100, 50) == 100 * 2.5 + 50 * 10


def test_integer_costs_equal_the_decimal_sum_rounded_half_up() -> None:
    """Costs are computed in integers (exact ratios of the prices); they must equal the
    Decimal definition to the micro-dollar, halves included."""
    rng = random.Random(7)

    def by_decimal(p: Price, u: Usage) -> int:
        cached = min(max(u.cached_tokens, 0), max(u.prompt_tokens, 0))
        cin = p.cached_input if p.cached_input is not None else p.input
        total = (
            (max(u.prompt_tokens, 0) - cached) * p.input
            + cached * cin
            + max(u.completion_tokens, 0) * p.output
        )
        return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    for i in range(5000):
        d = [Decimal(str(round(rng.uniform(0, 80), rng.randint(0, 7)))) for _ in range(3)]
        p = Price(d[0], d[1], d[2] if i % 3 else None)
        u = Usage(rng.randint(-2, 10**6), rng.randint(-2, 10**5), rng.randint(-2, 10**5))
        assert p.cost_micro(u) == by_decimal(p, u), (p, u)
    assert Price(Decimal("0.5"), Decimal("0")).cost_micro(Usage(1, 0)) == 1  # half: up
    assert Price(Decimal("0.5"), Decimal("0")).cost_micro(Usage(3, 0)) == 2  # 1.5 → 2
    assert Price(Decimal("0.49999"), Decimal("0")).cost_micro(Usage(1, 0)) == 0


def test_price_table_prefers_config_then_dated_defaults() -> None:
    table = PriceTable()
    assert table.effective_date.startswith("20")
    mini = DeploymentConfig(provider="openai", model="gpt-4o-mini", api_base="http://x")
    assert table.for_deployment(mini).input == Decimal("0.15")
    assert table.for_deployment(mini).source.startswith("default:")
    own = DeploymentConfig.model_validate({**mini.model_dump(), "prices": {"input_per_mtok": 1}})
    assert table.for_deployment(own).input == 1 and table.for_deployment(own).source == "config"
    local = DeploymentConfig(provider="local", model="smollm2")
    assert table.for_deployment(local).cost_micro(USAGE) == 0


def test_stream_and_non_stream_cost_the_same_to_the_micro_dollar(sqlite_store: Store) -> None:
    org = sqlite_store.tenants.create_org("org-x")
    team = sqlite_store.tenants.create_team("team-x", org=org.id)
    key, rec = sqlite_store.tenants.create_key(team=team.id, tags=("team-x",))
    provider = UsageProvider()

    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        gw = tenant_gateway(tenancy, Fleet(), lambda dc: provider, prices=PRICES)
        await gw.handle("chat/completions", chat(), None, {**bearer(key), "x-request-id": "plain"})
        s = await gw.handle_stream(
            "chat/completions", chat(stream=True), None, {**bearer(key), "x-request-id": "sse"}
        )
        async for _ in s:
            pass
        assert "stream_options" not in provider.last_body  # the client's body is untouched
        await tenancy.aclose()

    asyncio.run(scenario())
    rows = {r["group"]: r for r in sqlite_store.spend.report("key")}
    assert rows[rec.id]["requests"] == 2
    assert rows[rec.id]["cost_micro"] == 2 * 3750
    from sqlalchemy import select

    from slipstream.store.schema import spend

    with sqlite_store.engine.connect() as c:
        got = {r.request_id: r for r in c.execute(select(spend))}
    assert got["plain"].cost_micro == got["sse"].cost_micro == 3750
    assert got["sse"].stream and not got["plain"].stream
    assert got["sse"].cached_tokens == 600 and got["sse"].usage_source == "upstream"
    assert got["sse"].deployment == "a" and got["sse"].provider == "openai"
    assert got["sse"].tags == ["team-x"] and got["sse"].ttft_ms is not None
    sse = got["sse"]
    assert (sse.key_id, sse.team_id, sse.org_id, sse.status) == (rec.id, team.id, org.id, 200)
    assert (sse.prompt_tokens, sse.completion_tokens) == (1000, 200)
    assert sse.latency_ms == round(sse.latency_ms, 3) and sse.ttft_ms == round(sse.ttft_ms, 3)


def test_the_spend_stage_names_each_ledger_field_it_passes_in_order() -> None:
    """The stage builds its LedgerRow positionally (19 keyword arguments cost ~1.3 µs more per
    request) with each field's name in a comment beside it: the comments follow the fields."""
    src = inspect.getsource(SpendStage.post)
    call = src[src.index("LedgerRow(") :]
    names = re.findall(r"#\s*(\w+)\s*$", call, re.M)[: len(LedgerRow._fields)]
    assert tuple(names) == LedgerRow._fields


def test_a_cancelled_stream_is_billed_for_what_was_generated(sqlite_store: Store) -> None:
    key, _rec = sqlite_store.tenants.create_key(limits=Limits(budget_micro=10**9))

    async def scenario() -> None:
        tenancy = Tenancy(sqlite_store, master_key=MASTER)
        await tenancy.start()
        fleet = Fleet(a=[Step(chunks=50, chunk_delay=0.01)])
        gw = tenant_gateway(tenancy, fleet)
        s = await gw.handle_stream("chat/completions", chat(stream=True), None, bearer(key))
        seen = 0
        async for _ in s:
            seen += 1
            if seen == 3:
                break
        await s.aclose()  # the client went away
        await tenancy.aclose()

    asyncio.run(scenario())
    from sqlalchemy import select

    from slipstream.store.schema import spend

    with sqlite_store.engine.connect() as c:
        (row,) = c.execute(select(spend)).all()
    assert row.usage_source == "counted"
    assert row.completion_tokens == 3  # "a:0" "a:1" "a:2" = 9 chars → ceil(9/4)
    assert row.prompt_tokens > 0 and row.cost_micro > 0
    mini = PriceTable().for_deployment(
        DeploymentConfig(provider="openai", model="gpt-4o-mini", api_base="http://x")
    )
    assert row.cost_micro == mini.cost_micro(Usage(row.prompt_tokens, 3))


def test_from_config_opens_the_database_and_warns_about_unpriced_deployments(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    from slipstream.config import parse_config

    config = parse_config(
        {
            "master_key": MASTER,
            "database_url": f"sqlite:///{tmp_path / 'cfg.db'}",
            "tenancy": {"spend_flush_s": 0.1},
            "models": [
                {"name": "chat", "deployments": [
                    {"provider": "openai", "model": "my-finetune", "api_base": "http://x"},
                    {"provider": "openai", "model": "gpt-4o", "api_base": "http://x"},
                    {"provider": "local", "model": "smollm2"},
                ]}
            ],
        }
    )  # fmt: skip
    t = Tenancy.from_config(config)
    assert t.master_key == MASTER and t.writer.interval_s == 0.1
    assert (tmp_path / "cfg.db").exists()
    assert "openai/my-finetune" in caplog.text and "gpt-4o)" not in caplog.text
    t.store.close()
