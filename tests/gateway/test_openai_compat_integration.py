"""End to end over real HTTP: the gateway with the real OpenAI-compatible adapter in front of
a refused port and a live upstream (the only fake is the upstream model server)."""

from __future__ import annotations

import orjson
import pytest

from slipstream.config import DeploymentConfig, parse_config
from slipstream.gateway import Gateway, GatewayError

from .fakes import chat, run
from .upstream import Upstream, free_port

registry = pytest.importorskip("slipstream.providers.registry")

CANARY = "sk-canary-integration-4242"


def factory(dc: DeploymentConfig):
    return registry.build_provider(dc)


def test_fallback_over_http_from_refused_and_500_to_a_live_upstream(monkeypatch, caplog):
    monkeypatch.setenv("UP_KEY", CANARY)
    refused = f"http://127.0.0.1:{free_port()}/v1"
    with Upstream("live") as live:
        config = parse_config({"models": [
            {"name": "chat", "deployments": [
                {"provider": "openai", "model": "m", "api_base": refused, "name": "refused",
                 "api_key": "env:UP_KEY", "timeouts": {"connect": 1}},
            ], "fallbacks": ["broken", "good"], "retries": {"max": 1, "backoff_base_s": 0.01}},
            {"name": "broken", "deployments": [
                {"provider": "openai", "model": "fail-500", "api_base": live.api_base, "name": "five"},
            ], "retries": {"max": 0}},
            {"name": "good", "deployments": [
                {"provider": "openai", "model": "real", "api_base": live.api_base, "name": "ok",
                 "api_key": "env:UP_KEY"},
            ]},
        ]})  # fmt: skip
        gw = Gateway(config, factory)

        async def go():
            try:
                plain = await gw.handle("chat/completions", chat(), None, {"x-request-id": "rid-1"})
                stream = await gw.handle_stream("chat/completions", chat(stream=True), None, {})
                chunks = [c async for c in stream]
                with pytest.raises(GatewayError) as info:
                    await gw.handle("chat/completions", chat("broken"), None, {})
                return plain, stream, chunks, info.value
            finally:
                await gw.aclose()

        plain, stream, chunks, error = run(go)

    assert plain.model == "good" and plain.deployment == "ok"
    assert plain.response.body["choices"][0]["message"]["content"] == "hello from live"
    assert plain.response.usage is not None and plain.response.usage.completion_tokens == 3
    assert stream.model == "good"
    text = "".join(
        (c.data or orjson.loads(c.raw))["choices"][0]["delta"].get("content", "")
        for c in chunks
        if c.raw or c.data
    )
    assert text.strip() == "hello from live"
    assert error.status == 500
    # the live upstream saw the upstream model name, our request id and the resolved key
    first = live.seen[1]  # [0] is the 500 from "broken"
    assert first["body"]["model"] == "real" and first["headers"]["x-request-id"] == "rid-1"
    assert first["headers"]["authorization"] == f"Bearer {CANARY}"
    reg = gw.metrics.registry
    assert (
        reg.get_sample_value(
            "slipstream:gateway_errors_total",
            {"model": "chat", "deployment": "refused", "kind": "connection"},
        )
        == 4
    )  # two tries per request, two requests
    assert CANARY not in caplog.text
