"""The stage chain, request identity, overhead, metrics, logs, reload and secret hygiene."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from slipstream.config import parse_config
from slipstream.gateway import Gateway, GatewayError, Phase, Refusal
from slipstream.gateway.context import RequestContext
from slipstream.providers.base import ErrorKind

from .fakes import FakeClock, Fleet, Step, chat, dep, err, make_gateway, run

CANARY = "sk-canary-0xDEADBEEF-7731"


def test_request_id_is_propagated_or_generated_and_forwarded():
    fleet = Fleet()
    gw = make_gateway([{"name": "chat", "deployments": [dep("a")]}], fleet)
    given = run(lambda: gw.handle("chat/completions", chat(), None, {"X-Request-Id": "req-123"}))
    made = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert given.request_id == "req-123" and given.headers()["x-request-id"] == "req-123"
    assert len(made.request_id) == 32 and made.request_id != given.request_id
    assert [c.headers["x-request-id"] for c in fleet["a"].calls] == ["req-123", made.request_id]


def test_overhead_excludes_upstream_time():
    fleet = Fleet(a=[Step(delay=0.05)])
    gw = make_gateway([{"name": "chat", "deployments": [dep("a")]}], fleet)
    result = run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert 0 < result.overhead_ms < 25  # the 50 ms upstream wait is not counted
    assert float(result.headers()["x-slipstream-overhead-ms"]) == pytest.approx(
        result.overhead_ms, abs=1e-3
    )


def test_raw_body_passes_through_only_when_the_model_name_is_unchanged():
    models = [{"name": "chat", "deployments": [{"provider": "local", "model": "chat", "name": "same"}]},
              {"name": "other", "deployments": [dep("x")]}]  # fmt: skip
    fleet = Fleet()
    gw = make_gateway(models, fleet)
    raw = json.dumps(chat()).encode()
    run(lambda: gw.handle("chat/completions", chat(), raw, {}))
    run(lambda: gw.handle("chat/completions", chat("other"), raw, {}))
    assert fleet["same"].calls[0].raw_body == raw
    assert fleet["x"].calls[0].raw_body is None and fleet["x"].calls[0].body["model"] == "up-x"


class Recorder:
    def __init__(
        self, name: str, log: list[str], reject: bool = False, phase: Phase = Phase.ADMIT
    ) -> None:
        self.name, self.log, self.reject, self.phase = name, log, reject, phase

    async def pre(self, ctx: RequestContext) -> None:
        self.log.append(f"pre:{self.name}")
        if self.reject:
            raise Refusal(429, "rate_limit_exceeded", "over the key's limit", retry_after=3)

    async def post(self, ctx: RequestContext) -> None:
        self.log.append(f"post:{self.name}:{ctx.status}")


class Stages:
    """A feature contributing the given stages."""

    name = "test"

    def __init__(self, *stages: object) -> None:
        self._stages = list(stages)

    def stages(self) -> list:
        return self._stages


def test_stages_run_in_order_and_a_rejecting_stage_short_circuits():
    config = parse_config({"models": [{"name": "chat", "deployments": [dep("a")]}]})
    fleet = Fleet()
    log: list[str] = []
    gw = Gateway(
        config,
        fleet.factory,
        features=[Stages(Recorder("auth", log, phase=Phase.AUTHENTICATE), Recorder("limits", log))],
    )
    run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert log == ["pre:auth", "pre:limits", "post:limits:200", "post:auth:200"]

    log.clear()
    gw = Gateway(
        config,
        fleet.factory,
        features=[
            Stages(
                Recorder("auth", log, phase=Phase.AUTHENTICATE),
                Recorder("limits", log, reject=True),
                Recorder("never", log),
            )
        ],
    )
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", chat(), None, {}))
    assert info.value.status == 429 and info.value.headers()["retry-after"] == "3"
    assert info.value.body()["error"]["code"] == "rate_limit_exceeded"
    assert info.value.body()["error"]["type"] == "rate_limit_error"
    assert log == ["pre:auth", "pre:limits", "post:auth:429"]
    assert fleet.counts() == {"a": 0}  # the rejected request never reached a provider
    assert (
        gw.metrics.registry.get_sample_value(
            "slipstream:gateway_requests_total", {"model": "chat", "status": "429"}
        )
        == 1
    )  # but the meter stage still recorded it


def test_metrics_count_requests_retries_fallbacks_tokens_and_overhead():
    registry = CollectorRegistry()
    config = parse_config({"models": [
        {"name": "chat", "deployments": [dep("a")], "fallbacks": ["big"],
         "retries": {"max": 1, "backoff_base_s": 0}},
        {"name": "big", "deployments": [dep("b")]},
    ]})  # fmt: skip
    fleet = Fleet(
        a=[Step(error=err(ErrorKind.SERVER, 500)), Step(error=err(ErrorKind.SERVER, 500))]
    )
    gw = Gateway(config, fleet.factory, registry=registry, clock=FakeClock().clock())
    run(lambda: gw.handle("chat/completions", chat(), None, {}))
    run(lambda: gw.handle("chat/completions", chat(), None, {}))

    def v(name, **labels):
        return registry.get_sample_value("slipstream:gateway_" + name, labels)

    assert v("requests_total", model="chat", status="200") == 2
    assert v("errors_total", model="chat", deployment="a", kind="server") == 2
    assert v("retries_total", model="chat", deployment="a") == 1
    assert v("fallbacks_total", model="chat", fallback="big", reason="server") == 1
    assert v("upstream_requests_total", model="chat", deployment="a") == 3
    assert v("tokens_total", model="big", deployment="b", type="completion") == 4
    assert v("tokens_total", model="chat", deployment="a", type="prompt") == 3
    assert v("overhead_seconds_count", model="chat") == 2
    assert v("time_to_first_token_seconds_count", model="chat", deployment="a") == 1
    assert v("breaker_state", model="chat", deployment="a") == 0
    # a second gateway with its own registry shares nothing
    other = Gateway(config, Fleet().factory)
    assert other.metrics.registry is not registry


def test_one_json_log_line_per_request(caplog):
    fleet = Fleet(a=[Step(error=err(ErrorKind.SERVER, 500))])
    gw = make_gateway(
        [{"name": "chat", "deployments": [dep("a")], "retries": {"backoff_base_s": 0}}], fleet
    )
    with caplog.at_level(logging.INFO, logger="slipstream.gateway.requests"):
        run(lambda: gw.handle("chat/completions", chat(), None, {"x-request-id": "abc"}))
    lines = [r.getMessage() for r in caplog.records if r.name == "slipstream.gateway.requests"]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["request_id"] == "abc" and rec["deployment"] == "a" and rec["status"] == 200
    assert rec["attempts"] == 2 and rec["retries"] == 1 and rec["completion_tokens"] == 4
    assert rec["overhead_ms"] >= 0 and rec["latency_ms"] >= rec["overhead_ms"]
    assert set(rec["stages_ms"]) >= {"request_id", "route"}


def test_canary_secret_never_leaks(caplog, monkeypatch):
    monkeypatch.setenv("CANARY_KEY", CANARY)
    models = [
        {"name": "chat", "deployments": [
            {"provider": "openai", "model": "m", "api_base": "http://127.0.0.1:9/v1",
             "api_key": "env:CANARY_KEY", "headers": {"x-extra-auth": "env:CANARY_KEY"}, "name": "a"},
        ], "retries": {"max": 0}, "fallbacks": ["echo"]},
        {"name": "echo", "deployments": [dep("e")], "retries": {"max": 0}},
    ]  # fmt: skip
    # an upstream that echoes the key back in its error text (a real failure mode)
    leak = f"invalid api key {CANARY}"
    fleet = Fleet(
        a=[Step(error=err(ErrorKind.AUTH, 401, msg=leak))] * 3,
        e=[
            Step(error=err(ErrorKind.SERVER, 500, msg=leak)),
            Step(chunks=1, error_after=err(ErrorKind.MID_STREAM, 502, msg=leak)),
        ],
    )
    gw = make_gateway(models, fleet, FakeClock())
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(GatewayError) as info:
            run(lambda: gw.handle("chat/completions", chat(), None, {}))

        async def stream():
            s = await gw.handle_stream("chat/completions", chat(stream=True), None, {})
            return [c async for c in s]

        chunks = run(stream)
    e = info.value
    surfaces = [
        str(e), e.message, json.dumps(e.body()), json.dumps(e.headers()),
        json.dumps(gw.models()), repr(gw.config), gw.config.model_dump_json(),
        generate_latest(gw.metrics.registry).decode(), caplog.text,
        *(json.dumps(c.data) for c in chunks), *(c.raw.decode() for c in chunks if c.raw),
    ]  # fmt: skip
    assert any("invalid api key ***" in s for s in surfaces)  # the message survived, masked
    for s in surfaces:
        assert CANARY not in s
    assert gw.models() == [
        {"id": "chat", "object": "model", "created": 0, "owned_by": "slipstream"},
        {"id": "echo", "object": "model", "created": 0, "owned_by": "slipstream"},
    ]


def test_reload_swaps_atomically_and_keeps_in_flight_requests():
    fleet = Fleet()
    gw = make_gateway([{"name": "chat", "deployments": [dep("a"), dep("b")]}], fleet)
    new = parse_config({"models": [
        {"name": "chat", "deployments": [dep("b")]},
        {"name": "new", "deployments": [dep("c")]},
    ]})  # fmt: skip

    async def go():
        gate = asyncio.Event()
        fleet["a"].default = Step(gate=gate)
        fleet["b"].default = Step(gate=gate)
        old_b = fleet["b"]
        in_flight = [
            asyncio.create_task(gw.handle("chat/completions", chat(), None, {})) for _ in range(4)
        ]
        await asyncio.sleep(0.01)
        gw.reload(new)
        assert [m["id"] for m in gw.models()] == ["chat", "new"]
        assert fleet["b"] is old_b  # unchanged deployment kept its provider
        await asyncio.sleep(0.1)
        assert not fleet["a"].closed  # removed, but still serving an in-flight request
        gate.set()
        results = await asyncio.gather(*in_flight)
        await asyncio.sleep(0.2)
        assert fleet["a"].closed  # closed once its last request ended
        after = [await gw.handle("chat/completions", chat(), None, {}) for _ in range(5)]
        return results, after

    results, after = run(go)
    assert {r.deployment for r in results} == {"a", "b"}
    assert {r.deployment for r in after} == {"b"}
    assert run(lambda: gw.handle("chat/completions", chat("new"), None, {})).deployment == "c"


def test_reload_outside_the_event_loop_closes_removed_providers_on_aclose():
    fleet = Fleet()
    gw = make_gateway([{"name": "chat", "deployments": [dep("a")]}], fleet)
    gw.reload(parse_config({"models": [{"name": "chat", "deployments": [dep("b")]}]}))
    assert not fleet["a"].closed and [m["id"] for m in gw.models()] == ["chat"]
    assert run(lambda: gw.handle("chat/completions", chat(), None, {})).deployment == "b"
    run(gw.aclose)
    assert fleet["a"].closed and fleet["b"].closed


def test_a_cancelled_request_is_still_metered_and_releases_its_deployment():
    fleet = Fleet(a=[Step(delay=5)])
    gw = make_gateway([{"name": "chat", "deployments": [dep("a")]}], fleet)

    async def go():
        task = asyncio.create_task(gw.handle("chat/completions", chat(), None, {}))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(go)
    assert gw.state.groups["chat"].deployments[0].outstanding == 0
    assert (
        gw.metrics.registry.get_sample_value(
            "slipstream:gateway_requests_total", {"model": "chat", "status": "499"}
        )
        == 1
    )


def test_generated_request_ids_are_uuid4_hex() -> None:
    import uuid

    from slipstream.gateway.stages.request_id import new_request_id

    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for i in list(ids)[:200]:
        u = uuid.UUID(hex=i)
        assert u.hex == i and u.version == 4 and u.variant == uuid.RFC_4122
