"""The worked example stage (docs/architecture.md): a per-model request-size cap."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from tests.gateway.fakes import Fleet, chat, dep, run
from tests.gateway.serve_harness import start_serve
from tests.gateway.upstream import Upstream

from slipstream.config import parse_config
from slipstream.gateway import Gateway, GatewayError
from slipstream.guardrails import Guardrails


def models(cap: int | None) -> dict:
    capped = {"name": "chat", "deployments": [dep("a")]}
    if cap is not None:
        capped["max_request_bytes"] = cap
    return {"models": [capped, {"name": "free", "deployments": [dep("b")]}]}


def big(model: str, size: int) -> dict:
    return chat(model, messages=[{"role": "user", "content": "x" * size}])


def test_a_request_over_its_models_cap_is_refused_with_413_before_any_upstream():
    fleet = Fleet()
    gw = Gateway(parse_config(models(2_000)), fleet.factory, features=[Guardrails()])
    run(lambda: gw.handle("chat/completions", big("chat", 1_000), None, {}))
    with pytest.raises(GatewayError) as info:
        run(lambda: gw.handle("chat/completions", big("chat", 5_000), None, {}))
    e = info.value
    assert e.status == 413 and e.body()["error"]["code"] == "request_too_large"
    assert "accepts at most 2,000" in e.message and "'chat'" in e.message
    run(lambda: gw.handle("chat/completions", big("free", 5_000), None, {}))  # no cap there
    assert fleet.counts() == {"a": 1, "b": 1}

    raw = json.dumps(big("chat", 5_000)).encode()  # the client's bytes are what is measured
    with pytest.raises(GatewayError):
        run(lambda: gw.handle("chat/completions", big("chat", 5_000), raw, {}))


def test_a_reload_sets_and_lifts_a_cap_without_a_restart():
    fleet = Fleet()
    gw = Gateway(parse_config(models(None)), fleet.factory, features=[Guardrails()])
    run(lambda: gw.handle("chat/completions", big("chat", 5_000), None, {}))
    gw.reload(parse_config(models(100)))
    with pytest.raises(GatewayError):
        run(lambda: gw.handle("chat/completions", big("chat", 5_000), None, {}))
    gw.reload(parse_config(models(None)))
    run(lambda: gw.handle("chat/completions", big("chat", 5_000), None, {}))


def test_the_openai_sdk_sees_a_413_with_the_code_through_serve(tmp_path: Path):
    with Upstream("up") as up:
        deployment = {"provider": "openai", "model": "m", "api_base": up.api_base}
        cfg = {"models": [{"name": "chat", "max_request_bytes": 500, "deployments": [deployment]}]}
        path = tmp_path / "slipstream.yaml"
        path.write_text(json.dumps(cfg))
        served = start_serve(path)
        try:
            client = openai.OpenAI(base_url=served.api_url, api_key="unused", max_retries=0)
            ok = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
            assert ok.choices[0].message.content
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "x" * 1_000}]
                )
            assert info.value.status_code == 413
            assert info.value.body["code"] == "request_too_large"
            assert len(up.seen) == 1  # the refused request never reached the upstream
        finally:
            served.stop()
