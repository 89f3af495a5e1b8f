"""Contract tests: the Anthropic adapter against a fake Messages API."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from tests.providers.fake_anthropic import make_app
from tests.providers.upstream_server import CANARY, assert_no_canary, refused_url, run

from slipstream.providers.anthropic import AnthropicProvider
from slipstream.providers.base import (
    Endpoint,
    ErrorKind,
    ProviderError,
    ProviderRequest,
    StreamChunk,
)

KEY = "sk-ant-good-key-456"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def app():
    return make_app(KEY)


@pytest.fixture(scope="module")
def base_url(upstream_factory, app) -> str:
    return upstream_factory(app).url


def chat(model: str = "claude-x", stream: bool = False, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    return {"model": model, "messages": messages, "stream": stream, **extra}


def req(body: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> ProviderRequest:
    return ProviderRequest(
        endpoint=endpoint, body=body, stream=bool(body.get("stream")), request_id="r1"
    )


async def complete(provider: AnthropicProvider, request: ProviderRequest):
    try:
        return await provider.complete(request)
    finally:
        await provider.aclose()


async def collect(provider: AnthropicProvider, request: ProviderRequest) -> list[StreamChunk]:
    try:
        return [c async for c in provider.stream(request)]
    finally:
        await provider.aclose()


def test_complete_translates_request_and_response(base_url, app):
    body = chat(max_tokens=50, stop=["END"], tools=TOOLS, tool_choice="required")
    response = run(complete(AnthropicProvider(api_base=base_url, api_key=KEY), req(body)))
    sent = app.state.received[-1]["body"]
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert sent["max_tokens"] == 50 and sent["stop_sequences"] == ["END"]
    assert sent["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}
    assert sent["tool_choice"] == {"type": "any"}
    choice = response.body["choices"][0]
    assert choice["message"]["content"] == "Hello there" and choice["finish_reason"] == "stop"
    # input 10 + cache read 6 + cache write 2
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (18, 5)
    assert response.usage.cached_tokens == 6
    assert response.body["usage"]["prompt_tokens_details"]["cached_tokens"] == 6


def test_tool_calls_both_ways(base_url, app):
    history = chat("tools", tools=TOOLS)
    history["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_00",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_00", "content": "sunny"},
    ]
    response = run(complete(AnthropicProvider(api_base=base_url, api_key=KEY), req(history)))
    sent = app.state.received[-1]["body"]["messages"]
    assert sent[1]["content"] == [
        {"type": "tool_use", "id": "toolu_00", "name": "get_weather", "input": {"city": "Rome"}}
    ]
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_00", "content": "sunny"}],
    }
    choice = response.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01" and orjson.loads(call["function"]["arguments"]) == {
        "city": "Paris"
    }


def test_stream_text_and_usage(base_url):
    chunks = run(collect(AnthropicProvider(api_base=base_url, api_key=KEY), req(chat(stream=True))))
    forwarded = [c.data for c in chunks if c.data is not None]
    assert forwarded[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in forwarded if c["choices"])
    assert text == "Hello there"
    assert forwarded[-1]["choices"][0]["finish_reason"] == "stop"
    usage = [c for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].data is None  # client did not ask: accounting only
    assert (usage[0].usage.prompt_tokens, usage[0].usage.completion_tokens) == (18, 5)


def test_stream_tool_call_and_client_usage(base_url):
    body = chat("tools", stream=True, tools=TOOLS, stream_options={"include_usage": True})
    chunks = run(collect(AnthropicProvider(api_base=base_url, api_key=KEY), req(body)))
    data = [c.data for c in chunks if c.data is not None]
    calls = [
        tc for c in data if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls[0]["id"] == "toolu_01" and calls[0]["function"]["name"] == "get_weather"
    assert {tc["index"] for tc in calls} == {0}
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    finish = [c["choices"][0]["finish_reason"] for c in data if c["choices"]]
    assert finish[-1] == "tool_calls"
    assert (
        data[-1]["choices"] == []
        and data[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 6
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


CASES = [
    ("fail-429", ErrorKind.RATE_LIMITED, 429),
    ("fail-500", ErrorKind.SERVER, 500),
    ("fail-529", ErrorKind.SERVER, 529),
    ("fail-400-ctx", ErrorKind.CONTEXT_WINDOW, 400),
    ("fail-400", ErrorKind.BAD_REQUEST, 400),
    ("fail-403", ErrorKind.AUTH, 403),
    ("fail-404", ErrorKind.NOT_FOUND, 404),
]


@pytest.mark.parametrize(("model", "kind", "status"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_error_mapping(base_url, model, kind, status, stream):
    provider = AnthropicProvider(api_base=base_url, api_key=KEY)
    request = req(chat(model, stream=stream))
    with pytest.raises(ProviderError) as info:
        run(collect(provider, request) if stream else complete(provider, request))
    assert (info.value.kind, info.value.status) == (kind, status)
    if kind is ErrorKind.RATE_LIMITED:
        assert info.value.retry_after == 3.0


def test_stream_error_events(base_url):
    with pytest.raises(ProviderError) as info:
        run(
            collect(
                AnthropicProvider(api_base=base_url, api_key=KEY),
                req(chat("error-first", stream=True)),
            )
        )
    assert (info.value.kind, info.value.status) == (ErrorKind.SERVER, 529)
    with pytest.raises(ProviderError) as info:
        run(
            collect(
                AnthropicProvider(api_base=base_url, api_key=KEY),
                req(chat("error-mid", stream=True)),
            )
        )
    assert info.value.kind is ErrorKind.MID_STREAM and "overloaded" in info.value.message


def test_connection_refused_and_unsupported_endpoint():
    with pytest.raises(ProviderError) as info:
        run(complete(AnthropicProvider(api_base=refused_url(), api_key=KEY), req(chat())))
    assert info.value.kind is ErrorKind.CONNECTION
    with pytest.raises(ProviderError) as info:
        run(complete(AnthropicProvider(api_key=KEY), req({"input": "x"}, Endpoint.EMBEDDINGS)))
    assert info.value.kind is ErrorKind.BAD_REQUEST


def test_canary_key_never_leaks(base_url, caplog):
    caplog.set_level(logging.DEBUG)
    for stream in (False, True):
        provider = AnthropicProvider(api_base=base_url, api_key=CANARY)
        request = req(chat(stream=stream))
        with pytest.raises(ProviderError) as info:
            run(collect(provider, request) if stream else complete(provider, request))
        assert (info.value.kind, info.value.status) == (ErrorKind.AUTH, 401)
        assert_no_canary(info.value, caplog)
