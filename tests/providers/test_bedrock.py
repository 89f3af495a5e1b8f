"""Contract tests: the Bedrock Converse adapter against a fake runtime that verifies SigV4
and streams the binary event-stream framing."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from tests.providers.fake_bedrock import make_app
from tests.providers.upstream_server import CANARY, assert_no_canary, refused_url, run

from slipstream.providers.base import (
    Endpoint,
    ErrorKind,
    ProviderError,
    ProviderRequest,
    StreamChunk,
)
from slipstream.providers.bedrock import BedrockProvider

REGION = "us-east-1"
ACCESS, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-1"
BEARER = "bedrock-api-key-abc"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
]


@pytest.fixture(scope="module")
def app():
    return make_app({ACCESS: (SECRET, TOKEN), "AKIDNOTOKEN": (SECRET, None)}, BEARER, REGION)


@pytest.fixture(scope="module")
def base(upstream_factory, app) -> str:
    return upstream_factory(app).url


def bedrock(base: str, **credentials: Any) -> BedrockProvider:
    credentials = credentials or {
        "aws_access_key_id": ACCESS,
        "aws_secret_access_key": SECRET,
        "aws_session_token": TOKEN,
    }
    return BedrockProvider(region=REGION, api_base=base, **credentials)


def chat(model: str = MODEL, stream: bool = False, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    return {"model": model, "messages": messages, "stream": stream, **extra}


def req(body: dict[str, Any]) -> ProviderRequest:
    return ProviderRequest(
        Endpoint.CHAT, body, bool(body.get("stream")), "r1", headers={"x-request-id": "r1"}
    )


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


def test_signed_converse_request_and_response(base, app):
    body = chat(
        max_tokens=30, temperature=0.1, top_p=0.9, stop=["END"], tools=TOOLS, tool_choice="required"
    )
    response = run(complete(bedrock(base), req(body)))
    sent = app.state.received[-1]
    assert sent["raw_path"] == b"/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert sent["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert sent["headers"]["x-amz-security-token"] == TOKEN
    assert sent["body"]["system"] == [{"text": "Be brief."}]
    assert sent["body"]["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]
    assert sent["body"]["inferenceConfig"] == {
        "maxTokens": 30,
        "temperature": 0.1,
        "topP": 0.9,
        "stopSequences": ["END"],
    }
    assert sent["body"]["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": {"type": "object"}
    }
    assert sent["body"]["toolConfig"]["toolChoice"] == {"any": {}}
    assert response.body["choices"][0]["message"]["content"] == "Hello there"
    # inputTokens 9 + cacheRead 3
    assert (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
        response.usage.cached_tokens,
    ) == (12, 4, 3)


def test_signature_is_checked_by_the_fake(base):
    """The fake really verifies: a wrong secret key gives 403 → AUTH."""
    wrong = bedrock(
        base,
        aws_access_key_id=ACCESS,
        aws_secret_access_key="not-the-secret",
        aws_session_token=TOKEN,
    )
    with pytest.raises(ProviderError) as info:
        run(complete(wrong, req(chat())))
    assert (info.value.kind, info.value.status) == (ErrorKind.AUTH, 403)
    assert "signature" in info.value.message
    ok = bedrock(base, aws_access_key_id="AKIDNOTOKEN", aws_secret_access_key=SECRET)
    assert run(complete(ok, req(chat()))).usage.total_tokens == 16


def test_bearer_api_key(base, app):
    response = run(complete(bedrock(base, api_key=BEARER), req(chat())))
    assert app.state.received[-1]["headers"]["authorization"] == f"Bearer {BEARER}"
    assert response.body["choices"][0]["finish_reason"] == "stop"


def test_tool_calls_and_results(base, app):
    history = chat("tools", tools=TOOLS)
    history["messages"] += [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "t0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t0", "content": '{"temp": 21}'},
    ]
    response = run(complete(bedrock(base), req(history)))
    messages = app.state.received[-1]["body"]["messages"]
    assert messages[1]["content"] == [
        {"toolUse": {"toolUseId": "t0", "name": "get_weather", "input": {"city": "Rome"}}}
    ]
    assert messages[2]["content"] == [
        {"toolResult": {"toolUseId": "t0", "content": [{"json": {"temp": 21}}]}}
    ]
    choice = response.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }


def test_stream_decodes_event_stream_framing(base, app):
    chunks = run(collect(bedrock(base), req(chat(stream=True))))
    assert app.state.received[-1]["raw_path"].endswith(b"/converse-stream")
    data = [c.data for c in chunks if c.data is not None]
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in data) == "Hello there"
    assert data[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1].data is None and chunks[-1].usage.prompt_tokens == 12
    body = chat("tools", stream=True, tools=TOOLS, stream_options={"include_usage": True})
    chunks = run(collect(bedrock(base), req(body)))
    data = [c.data for c in chunks if c.data is not None]
    calls = [
        tc for c in data if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls[0]["id"] == "tooluse_1" and calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert [c["choices"][0]["finish_reason"] for c in data if c["choices"]][-1] == "tool_calls"
    assert data[-1]["usage"]["completion_tokens"] == 4


CASES = [
    ("fail-429", ErrorKind.RATE_LIMITED, 429),
    ("fail-500", ErrorKind.SERVER, 500),
    ("fail-503", ErrorKind.SERVER, 503),
    ("fail-424", ErrorKind.SERVER, 502),  # ModelErrorException: the model failed, not the client
    ("fail-400-ctx", ErrorKind.CONTEXT_WINDOW, 400),
    ("fail-400", ErrorKind.BAD_REQUEST, 400),
    ("fail-403", ErrorKind.AUTH, 403),
    ("fail-404", ErrorKind.NOT_FOUND, 404),
]


@pytest.mark.parametrize(("model", "kind", "status"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_error_mapping(base, model, kind, status, stream):
    request = req(chat(model, stream=stream))
    with pytest.raises(ProviderError) as info:
        run(collect(bedrock(base), request) if stream else complete(bedrock(base), request))
    assert (info.value.kind, info.value.status) == (kind, status)


def test_stream_exceptions_and_corruption(base):
    with pytest.raises(ProviderError) as info:
        run(collect(bedrock(base), req(chat("error-first", stream=True))))
    assert (info.value.kind, info.value.status) == (ErrorKind.RATE_LIMITED, 429)
    with pytest.raises(ProviderError) as info:
        run(collect(bedrock(base), req(chat("error-mid", stream=True))))
    assert (
        info.value.kind is ErrorKind.MID_STREAM
        and "modelStreamErrorException" in info.value.message
    )
    with pytest.raises(ProviderError) as info:
        run(collect(bedrock(base), req(chat("corrupt", stream=True))))
    assert info.value.kind is ErrorKind.MID_STREAM and "corrupt" in info.value.message
    with pytest.raises(ProviderError) as info:
        run(complete(bedrock(refused_url()), req(chat())))
    assert info.value.kind is ErrorKind.CONNECTION


def test_canary_credentials_never_leak(base, caplog):
    caplog.set_level(logging.DEBUG)
    for stream in (False, True):
        request = req(chat(stream=stream))
        for creds in (
            {"api_key": CANARY},
            {
                "aws_access_key_id": ACCESS,
                "aws_secret_access_key": CANARY,
                "aws_session_token": CANARY + "-token",
            },
        ):
            provider = bedrock(base, **creds)
            with pytest.raises(ProviderError) as info:
                run(collect(provider, request) if stream else complete(provider, request))
            assert info.value.kind is ErrorKind.AUTH
            assert_no_canary(info.value, caplog)
