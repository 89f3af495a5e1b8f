"""Streams: transparent fallback before the first chunk, a clean error chunk after it."""

from __future__ import annotations

import asyncio

import httpx
import openai
import orjson
import pytest

from slipstream.gateway import GatewayError
from slipstream.providers.base import ErrorKind, StreamChunk

from .fakes import FakeClock, Fleet, Step, chat, dep, err, make_gateway, run

MODELS = [
    {"name": "chat", "deployments": [dep("a")], "fallbacks": ["big"],
     "retries": {"max": 1, "backoff_base_s": 0}},
    {"name": "big", "deployments": [dep("b")]},
]  # fmt: skip


async def collect(gw, headers=None) -> tuple[object, list[StreamChunk]]:
    stream = await gw.handle_stream("chat/completions", chat(stream=True), None, headers or {})
    return stream, [c async for c in stream]


def texts(chunks: list[StreamChunk]) -> list[str]:
    return [
        c.data["choices"][0]["delta"]["content"] for c in chunks if c.data and c.data.get("choices")
    ]


def test_failure_before_the_first_chunk_falls_back_transparently():
    fleet = Fleet(a=[Step(error=err(ErrorKind.CONNECTION, 502))] * 2)
    gw = make_gateway(MODELS, fleet, FakeClock())
    stream, chunks = run(lambda: collect(gw))
    assert texts(chunks) == ["b:0", "b:1", "b:2"]
    assert stream.deployment == "b" and stream.model == "big"
    assert chunks[-1].usage is not None and not any("error" in (c.data or {}) for c in chunks)
    assert fleet.counts() == {"a": 2, "b": 1}
    assert gw.state.groups["chat"].deployments[0].outstanding == 0
    assert gw.state.groups["big"].deployments[0].outstanding == 0


def test_first_token_timeout_on_a_stream_falls_back():
    models = [
        {"name": "chat", "deployments": [dep("a", timeouts={"first_token": 0.05})],
         "fallbacks": ["big"], "retries": {"max": 0}},
        {"name": "big", "deployments": [dep("b")]},
    ]  # fmt: skip
    fleet = Fleet(a=[Step(delay=5)])
    gw = make_gateway(models, fleet)
    stream, chunks = run(lambda: collect(gw))
    assert stream.deployment == "b" and texts(chunks)[0] == "b:0"


def test_failure_after_the_first_chunk_ends_with_an_error_chunk():
    fleet = Fleet(
        a=[Step(chunks=2, error_after=err(ErrorKind.MID_STREAM, 502, msg="reset by peer"))]
    )
    gw = make_gateway(MODELS, fleet, FakeClock())
    _stream, chunks = run(lambda: collect(gw))
    assert texts(chunks) == ["a:0", "a:1"]  # no silent switch to "b" mid-answer
    last = chunks[-1]
    assert set(last.data) == {"error"} and "reset by peer" in last.data["error"]["message"]
    assert last.data["error"]["code"] == "stream_interrupted"
    assert orjson.loads(last.raw) == last.data
    assert fleet.counts() == {"a": 1, "b": 0}
    reg = gw.metrics.registry
    assert (
        reg.get_sample_value(
            "slipstream:gateway_errors_total",
            {"model": "chat", "deployment": "a", "kind": "mid_stream"},
        )
        == 1
    )
    assert (
        reg.get_sample_value(
            "slipstream:gateway_requests_total", {"model": "chat", "status": "502"}
        )
        == 1
    )
    assert gw.state.groups["chat"].deployments[0].outstanding == 0


def test_total_timeout_mid_stream_ends_with_an_error_chunk():
    models = [{"name": "chat", "deployments": [dep("a", timeouts={"total": 0.2})]}]
    fleet = Fleet(a=[Step(chunks=50, chunk_delay=0.05)])
    gw = make_gateway(models, fleet)
    _, chunks = run(lambda: collect(gw))
    assert 2 <= len(texts(chunks)) < 10
    assert "timeout" in chunks[-1].data["error"]["message"]


def test_openai_sdk_raises_on_the_error_chunk():
    """The final event, framed as SSE, is what the official SDK turns into an APIError."""
    fleet = Fleet(a=[Step(chunks=1, error_after=err(ErrorKind.SERVER, 500, msg="upstream died"))])
    gw = make_gateway(MODELS, fleet, FakeClock())
    _, chunks = run(lambda: collect(gw))
    sse = b"".join(
        b"data: " + (c.raw or orjson.dumps(c.data)) + b"\n\n" for c in chunks if c.data or c.raw
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    client = openai.OpenAI(
        base_url="http://gw/v1",
        api_key="x",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    got = []
    with pytest.raises(openai.APIError, match="upstream died"):
        for event in client.chat.completions.create(model="chat", messages=[], stream=True):
            got.append(event.choices[0].delta.content)
    assert got == ["a:0"]


def test_all_stream_attempts_failing_raises_before_any_byte():
    fleet = Fleet(
        a=[Step(error=err(ErrorKind.SERVER, 503))] * 2,
        b=[Step(error=err(ErrorKind.SERVER, 500))] * 3,
    )
    gw = make_gateway(MODELS, fleet, FakeClock())
    with pytest.raises(GatewayError) as info:
        run(lambda: collect(gw))
    assert info.value.status == 500


def test_closing_a_stream_early_releases_the_deployment():
    fleet = Fleet(a=[Step(chunks=20)])
    gw = make_gateway(MODELS, fleet, FakeClock())

    async def go():
        stream = await gw.handle_stream("chat/completions", chat(stream=True), None, {})
        it = aiter(stream)
        await anext(it)
        await stream.aclose()
        unstarted = await gw.handle_stream("chat/completions", chat(stream=True), None, {})
        await unstarted.aclose()  # never iterated (client left before the headers)
        await asyncio.sleep(0)

    run(go)
    assert gw.state.groups["chat"].deployments[0].outstanding == 0
    assert (
        gw.metrics.registry.get_sample_value(
            "slipstream:gateway_requests_total", {"model": "chat", "status": "200"}
        )
        == 2
    )
