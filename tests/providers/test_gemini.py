"""Contract tests: the Gemini / Vertex adapter against a fake generateContent API."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from tests.providers.fake_gemini import make_app
from tests.providers.upstream_server import CANARY, assert_no_canary, refused_url, run

from slipstream.providers.base import (
    Endpoint,
    ErrorKind,
    ProviderError,
    ProviderRequest,
    StreamChunk,
)
from slipstream.providers.gemini import GeminiProvider

KEY = "AIza-good-key-789"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object"},
        },
    }
]


@pytest.fixture(scope="module")
def app():
    return make_app(KEY)


@pytest.fixture(scope="module")
def root(upstream_factory, app) -> str:
    return upstream_factory(app).url


def gemini(root: str, key: str = KEY) -> GeminiProvider:
    return GeminiProvider(api_base=root + "/v1beta", api_key=key)


def chat(model: str = "gemini-x", stream: bool = False, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    return {"model": model, "messages": messages, "stream": stream, **extra}


def req(body: dict[str, Any]) -> ProviderRequest:
    return ProviderRequest(Endpoint.CHAT, body, bool(body.get("stream")), "r1")


async def complete(provider, request):
    try:
        return await provider.complete(request)
    finally:
        await provider.aclose()


async def collect(provider, request) -> list[StreamChunk]:
    try:
        return [c async for c in provider.stream(request)]
    finally:
        await provider.aclose()


def test_complete_translates_request_and_response(root, app):
    body = chat(max_tokens=40, temperature=0.2, stop="END", tools=TOOLS, tool_choice="auto")
    response = run(complete(gemini(root), req(body)))
    sent = app.state.received[-1]
    assert sent["url"].endswith("/v1beta/models/gemini-x:generateContent")
    assert "key=" not in sent["url"]  # the key travels in a header, never in the URL
    assert sent["body"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["body"]["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert sent["body"]["generationConfig"] == {
        "temperature": 0.2,
        "maxOutputTokens": 40,
        "stopSequences": ["END"],
    }
    assert sent["body"]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert sent["body"]["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert response.body["choices"][0]["message"]["content"] == "Hello there"
    assert response.body["choices"][0]["finish_reason"] == "stop"
    assert (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
        response.usage.cached_tokens,
    ) == (12, 3, 5)


def test_tool_calls_and_tool_results(root, app):
    history = chat("tools", tools=TOOLS)
    history["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": '{"temp": 21}'},
    ]
    response = run(complete(gemini(root), req(history)))
    contents = app.state.received[-1]["body"]["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp": 21}}}],
    }
    choice = response.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }


def test_stream_text_usage_and_tools(root, app):
    chunks = run(collect(gemini(root), req(chat(stream=True))))
    assert app.state.received[-1]["url"].endswith(":streamGenerateContent?alt=sse")
    data = [c.data for c in chunks if c.data is not None]
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in data) == "Hello there"
    assert data[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].data is None and chunks[-1].usage.total_tokens == 15
    body = chat("tools", stream=True, tools=TOOLS, stream_options={"include_usage": True})
    chunks = run(collect(gemini(root), req(body)))
    data = [c.data for c in chunks if c.data is not None]
    calls = [
        tc for c in data if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["index"] == 0
    assert [c["choices"][0]["finish_reason"] for c in data if c["choices"]][-1] == "tool_calls"
    assert data[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 5


def test_vertex_path_and_bearer(root, app):
    base = root + "/v1/projects/proj-1/locations/us-central1"
    provider = GeminiProvider(api_base=base, api_key=KEY, vertex=True)
    response = run(complete(provider, req(chat("gemini-v"))))
    sent = app.state.received[-1]
    assert (
        "/projects/proj-1/locations/us-central1/publishers/google/models/gemini-v:generateContent"
        in sent["url"]
    )
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert response.body["choices"][0]["message"]["content"] == "Hello there"


CASES = [
    ("fail-429", ErrorKind.RATE_LIMITED, 429),
    ("fail-500", ErrorKind.SERVER, 500),
    ("fail-503", ErrorKind.SERVER, 503),
    ("fail-400-ctx", ErrorKind.CONTEXT_WINDOW, 400),
    ("fail-400", ErrorKind.BAD_REQUEST, 400),
    ("fail-403", ErrorKind.AUTH, 403),
    ("fail-404", ErrorKind.NOT_FOUND, 404),
]


@pytest.mark.parametrize(("model", "kind", "status"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_error_mapping(root, model, kind, status, stream):
    request = req(chat(model, stream=stream))
    with pytest.raises(ProviderError) as info:
        run(collect(gemini(root), request) if stream else complete(gemini(root), request))
    assert (info.value.kind, info.value.status) == (kind, status)
    if kind is ErrorKind.RATE_LIMITED:
        assert info.value.retry_after == 17.0  # from google.rpc.RetryInfo


def test_error_event_mid_stream_and_refused(root):
    with pytest.raises(ProviderError) as info:
        run(collect(gemini(root), req(chat("error-mid", stream=True))))
    assert info.value.kind is ErrorKind.MID_STREAM
    with pytest.raises(ProviderError) as info:
        run(complete(GeminiProvider(api_base=refused_url(), api_key=KEY), req(chat())))
    assert info.value.kind is ErrorKind.CONNECTION


def test_canary_key_never_leaks(root, caplog):
    caplog.set_level(logging.DEBUG)
    for stream in (False, True):
        request = req(chat(stream=stream))
        provider = gemini(root, CANARY)
        with pytest.raises(ProviderError) as info:
            run(collect(provider, request) if stream else complete(provider, request))
        # Gemini answers a bad key with 400 API_KEY_INVALID: a configuration problem, not the client's
        assert (info.value.kind, info.value.status) == (ErrorKind.AUTH, 401)
        assert_no_canary(info.value, caplog)
