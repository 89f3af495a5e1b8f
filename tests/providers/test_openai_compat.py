"""Contract tests: the OpenAI-compatible and Azure adapters against a fake upstream."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from tests.providers.fake_openai import USAGE, make_app
from tests.providers.upstream_server import CANARY, assert_no_canary, refused_url, run

from slipstream.providers.azure_openai import AzureOpenAIProvider
from slipstream.providers.base import (
    Endpoint,
    ErrorKind,
    ProviderError,
    ProviderRequest,
    StreamChunk,
    Timeouts,
)
from slipstream.providers.openai_compat import OpenAICompatProvider, with_stream_usage

KEY = "sk-upstream-good-key-123"
AZURE_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def openai_app():
    return make_app(KEY)


@pytest.fixture(scope="module")
def base_url(upstream_factory, openai_app) -> str:
    return upstream_factory(openai_app).url + "/v1"


@pytest.fixture(scope="module")
def azure_url(upstream_factory) -> str:
    return upstream_factory(make_app(KEY, azure_version=AZURE_VERSION)).url


def chat(model: str = "m1", stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": stream,
        **extra,
    }


def request(
    body: dict[str, Any],
    *,
    raw: bytes | None = None,
    endpoint=Endpoint.CHAT,
    timeouts: Timeouts | None = None,
) -> ProviderRequest:
    return ProviderRequest(
        endpoint=endpoint,
        body=body,
        stream=bool(body.get("stream")),
        request_id="req-1",
        timeouts=timeouts or Timeouts(),
        raw_body=raw,
        headers={"x-request-id": "req-1"},
    )


async def collect(provider, req: ProviderRequest) -> list[StreamChunk]:
    try:
        return [c async for c in provider.stream(req)]
    finally:
        await provider.aclose()


async def complete(provider, req: ProviderRequest):
    try:
        return await provider.complete(req)
    finally:
        await provider.aclose()


def content_of(chunks: list[StreamChunk]) -> str:
    text = ""
    for c in chunks:
        if c.raw is not None:
            for choice in orjson.loads(c.raw)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


# --- pass-through ----------------------------------------------------------------------


def test_complete_passes_client_bytes_and_upstream_bytes_through(base_url, openai_app):
    raw = b'{"model": "m1",  "messages":[{"role":"user","content":"Hi \\"model\\": \\"x\\""}]}'
    provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
    response = run(complete(provider, request(orjson.loads(raw), raw=raw)))
    received = openai_app.state.received[-1]
    assert received["raw"] == raw  # byte-identical: nothing re-serialised
    assert received["headers"]["x-request-id"] == "req-1"
    assert response.raw is not None and orjson.loads(response.raw) == response.body
    assert response.body["choices"][0]["message"]["content"] == "Hello there"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 2)
    assert response.usage.cached_tokens == 4


def test_model_rename_reserialises_the_parsed_body(base_url, openai_app):
    # The gateway passes no raw bytes when the model changes; the parsed body is re-encoded.
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "m-upstream",
        "temperature": 0.5,
    }
    provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
    run(complete(provider, request(body)))
    assert orjson.loads(openai_app.state.received[-1]["raw"]) == body


def test_stream_usage_is_prepended_to_the_client_bytes():
    raw = b'{"model":"a","stream":true,"messages":[]}'
    assert with_stream_usage(raw) == b'{"stream_options":{"include_usage":true},' + raw[1:]
    assert orjson.loads(with_stream_usage(b'  {"model":"a"}'))["stream_options"] == {
        "include_usage": True
    }


def test_stream_asks_usage_and_withholds_the_extra_usage_chunk(base_url, openai_app):
    raw = orjson.dumps(chat(stream=True))
    provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
    chunks = run(collect(provider, request(orjson.loads(raw), raw=raw)))
    sent_raw = openai_app.state.received[-1]["raw"]
    assert sent_raw == b'{"stream_options":{"include_usage":true},' + raw[1:]  # no re-encoding
    assert orjson.loads(sent_raw)["stream_options"] == {"include_usage": True}
    assert content_of(chunks) == "Hello there"
    forwarded = [c for c in chunks if c.raw is not None]
    assert all(orjson.loads(c.raw)["choices"] for c in forwarded)  # no usage-only chunk forwarded
    accounting = [c for c in chunks if c.usage is not None]
    assert len(accounting) == 1 and accounting[0].raw is None and accounting[0].data is None
    assert accounting[0].usage.prompt_tokens == 11 and accounting[0].usage.cached_tokens == 4


def test_stream_forwards_usage_chunk_when_client_asked(base_url, openai_app):
    body = chat(stream=True, stream_options={"include_usage": True})
    raw = orjson.dumps(body)
    provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
    chunks = run(collect(provider, request(body, raw=raw)))
    assert openai_app.state.received[-1]["raw"] == raw
    last = chunks[-1]
    assert last.raw is not None and orjson.loads(last.raw)["usage"] == USAGE
    assert last.usage is not None and last.usage.total_tokens == 13


def test_stream_without_raw_body_reserialises(base_url, openai_app):
    provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
    chunks = run(collect(provider, request(chat(stream=True))))
    assert content_of(chunks) == "Hello there"
    assert orjson.loads(openai_app.state.received[-1]["raw"])["stream_options"]["include_usage"]


def test_tool_calls_complete_and_stream(base_url):
    response = run(
        complete(
            OpenAICompatProvider(api_base=base_url, api_key=KEY),
            request(chat("tools", tools=[{"type": "function"}])),
        )
    )
    call = response.body["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert response.body["choices"][0]["finish_reason"] == "tool_calls"
    chunks = run(
        collect(
            OpenAICompatProvider(api_base=base_url, api_key=KEY),
            request(chat("tools", stream=True)),
        )
    )
    args = ""
    for c in chunks:
        if c.raw:
            for choice in orjson.loads(c.raw)["choices"]:
                for tc in choice["delta"].get("tool_calls") or []:
                    args += tc["function"].get("arguments", "")
    assert orjson.loads(args) == {"city": "Paris"}


def test_completions_and_embeddings(base_url):
    body = {"model": "m1", "prompt": "Once"}
    response = run(
        complete(
            OpenAICompatProvider(api_base=base_url, api_key=KEY),
            request(body, endpoint=Endpoint.COMPLETIONS),
        )
    )
    assert response.body["choices"][0]["text"] == "Hello there"
    body = {"model": "m1", "input": "abc"}
    response = run(
        complete(
            OpenAICompatProvider(api_base=base_url, api_key=KEY),
            request(body, endpoint=Endpoint.EMBEDDINGS),
        )
    )
    assert response.body["data"][0]["embedding"] == [0.1, 0.2, 0.3]


# --- errors ----------------------------------------------------------------------------

CASES = [
    ("fail-429", ErrorKind.RATE_LIMITED, 429),
    ("fail-500", ErrorKind.SERVER, 500),
    ("fail-503", ErrorKind.SERVER, 503),
    ("fail-400-ctx", ErrorKind.CONTEXT_WINDOW, 400),
    ("fail-400", ErrorKind.BAD_REQUEST, 400),
    ("fail-422", ErrorKind.BAD_REQUEST, 422),
    ("fail-403", ErrorKind.AUTH, 403),
    ("fail-404", ErrorKind.NOT_FOUND, 404),
]


@pytest.mark.parametrize(("model", "kind", "status"), CASES)
@pytest.mark.parametrize("stream", [False, True])
def test_error_mapping(base_url, model, kind, status, stream):
    provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
    req = request(chat(model, stream=stream))
    with pytest.raises(ProviderError) as info:
        run(collect(provider, req) if stream else complete(provider, req))
    assert (info.value.kind, info.value.status) == (kind, status)
    assert "upstream" in info.value.message
    if kind is ErrorKind.RATE_LIMITED:
        assert info.value.retry_after == 7.0


def test_retry_after_http_date(base_url):
    with pytest.raises(ProviderError) as info:
        run(
            complete(
                OpenAICompatProvider(api_base=base_url, api_key=KEY), request(chat("fail-429-date"))
            )
        )
    assert info.value.retry_after is not None and info.value.retry_after > 86400


def test_connection_refused_and_timeout(base_url):
    for stream in (False, True):
        provider = OpenAICompatProvider(api_base=refused_url() + "/v1", api_key=KEY)
        with pytest.raises(ProviderError) as info:
            run(
                collect(provider, request(chat(stream=stream)))
                if stream
                else complete(provider, request(chat()))
            )
        assert info.value.kind is ErrorKind.CONNECTION and info.value.retryable
        fast = Timeouts(connect_s=1, first_token_s=0.3, total_s=5)
        provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
        req = request(chat("slow", stream=stream), timeouts=fast)
        with pytest.raises(ProviderError) as info:
            run(collect(provider, req) if stream else complete(provider, req))
        assert (info.value.kind, info.value.status) == (ErrorKind.TIMEOUT, 504)


@pytest.mark.parametrize("model", ["break-mid", "slow-mid"])
def test_failure_after_first_chunk_is_mid_stream(base_url, model):
    got: list[StreamChunk] = []

    async def go() -> None:
        provider = OpenAICompatProvider(api_base=base_url, api_key=KEY)
        fast = Timeouts(connect_s=1, first_token_s=0.5, total_s=5)
        try:
            async for c in provider.stream(request(chat(model, stream=True), timeouts=fast)):
                got.append(c)
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        run(go())
    assert info.value.kind is ErrorKind.MID_STREAM
    assert content_of(got) == "Hello"


def test_canary_key_never_leaks(base_url, caplog):
    caplog.set_level(logging.DEBUG)
    for stream in (False, True):
        provider = OpenAICompatProvider(api_base=base_url, api_key=CANARY)
        req = request(chat(stream=stream))
        with pytest.raises(ProviderError) as info:
            run(collect(provider, req) if stream else complete(provider, req))
        assert (info.value.kind, info.value.status) == (ErrorKind.AUTH, 401)
        assert "Incorrect API key provided" in info.value.message  # the upstream echoed it...
        assert "[REDACTED]" in info.value.message  # ...and we blanked it
        assert_no_canary(info.value, caplog)
    provider = OpenAICompatProvider(api_base=refused_url() + "/v1", api_key=CANARY)
    with pytest.raises(ProviderError) as info:
        run(complete(provider, request(chat())))
    assert_no_canary(info.value, caplog)


# --- Azure -----------------------------------------------------------------------------


def test_azure_deployment_url_and_api_key(azure_url):
    provider = AzureOpenAIProvider(
        api_base=azure_url, api_key=KEY, deployment="gpt4o-dep", api_version=AZURE_VERSION
    )
    raw = orjson.dumps(chat("public"))
    response = run(complete(provider, request(orjson.loads(raw), raw=raw)))
    assert response.body["model"] == "gpt4o-dep"
    assert response.usage.total_tokens == 13
    provider = AzureOpenAIProvider(
        api_base=azure_url, api_key=KEY, deployment="tools", api_version=AZURE_VERSION
    )
    chunks = run(collect(provider, request(chat(stream=True))))
    assert any(c.usage is not None for c in chunks)


@pytest.mark.parametrize(("deployment", "kind", "status"), CASES[:4])
def test_azure_error_mapping(azure_url, deployment, kind, status):
    provider = AzureOpenAIProvider(
        api_base=azure_url, api_key=KEY, deployment=deployment, api_version=AZURE_VERSION
    )
    with pytest.raises(ProviderError) as info:
        run(complete(provider, request(chat())))
    assert (info.value.kind, info.value.status) == (kind, status)


def test_azure_canary_never_leaks(azure_url, caplog):
    caplog.set_level(logging.DEBUG)
    provider = AzureOpenAIProvider(
        api_base=azure_url, api_key=CANARY, deployment="d", api_version=AZURE_VERSION
    )
    with pytest.raises(ProviderError) as info:
        run(collect(provider, request(chat(stream=True))))
    assert info.value.kind is ErrorKind.AUTH
    assert_no_canary(info.value, caplog)
