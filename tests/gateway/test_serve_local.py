"""`slipstream serve --config` with the issue's example shape: model `chat` = an OpenAI-compatible
deployment (a fake upstream that answers 500) + the embedded engine (`local`), falling back to
`chat-large`. The official OpenAI and Anthropic SDKs, streaming and not, reach the real engine
through the gateway's stage chain."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import orjson
import pytest
from tests.providers.fake_openai import make_app
from tests.providers.upstream_server import CANARY, FakeUpstream

from .serve_harness import Served, start_serve

pytestmark = pytest.mark.slow  # starts the real engine process (~20-30 s on 2 shared cores)

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
LOCAL = "local/smollm2-135m"


def issue_config(api_base: str) -> str:
    return f"""
models:
  - name: chat
    deployments:
      - provider: openai          # OpenAI-compatible upstream (this one answers 500)
        model: fail-500
        api_base: {api_base}/v1
        api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY
      - provider: local           # the embedded engine
        model: smollm2-135m
    fallbacks: [chat-large]
    context_window_fallbacks: [chat-large]
  - name: chat-large
    deployments:
      - provider: openai
        model: large
        api_base: {api_base}/v1
        api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    mp = pytest.MonkeyPatch()
    mp.setenv("SLIPSTREAM_TEST_UPSTREAM_KEY", CANARY)
    path: Path = tmp_path_factory.mktemp("serve-local") / "slipstream.yaml"
    with FakeUpstream(make_app(CANARY)) as upstream:
        path.write_text(issue_config(upstream.url))
        served = start_serve(path)
        yield served
        served.stop()
    mp.undo()


@pytest.fixture(scope="module")
def sdk(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def claude(server: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0)


def test_openai_sdk_reaches_the_engine_stream_and_not(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=FRANCE, temperature=0, max_tokens=12
    )
    whole = raw.parse()
    assert raw.headers["x-slipstream-deployment"] == LOCAL  # a 500 upstream is retried away
    assert "Paris" in whole.choices[0].message.content
    assert float(raw.headers["x-slipstream-overhead-ms"]) >= 0
    stream = sdk.chat.completions.create(
        model="chat",
        messages=FRANCE,
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content  # greedy: the same answer
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_anthropic_sdk_reaches_the_engine_stream_and_not(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model="chat", max_tokens=12, messages=FRANCE, extra_body={"temperature": 0}
    )
    text = message.content[0].text
    assert "Paris" in text and message.stop_reason in ("end_turn", "max_tokens")
    usage = message.usage  # Anthropic counts prefix-cache hits apart from input_tokens
    assert usage.input_tokens + usage.cache_read_input_tokens > 20
    assert 0 < usage.output_tokens <= 12
    with claude.messages.stream(
        model="chat", max_tokens=12, messages=FRANCE, extra_body={"temperature": 0}
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert final.usage.output_tokens == message.usage.output_tokens


def test_route_to_the_broken_deployment_falls_back_to_the_next_model(server: Served) -> None:
    r = httpx.post(
        server.api_url + "/chat/completions",
        json={"model": "chat", "messages": FRANCE},
        headers={"x-slipstream-route": "openai/fail-500"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello there"
    assert r.headers["x-slipstream-deployment"] == "openai/large"


def test_context_window_exceeded_falls_back_to_a_larger_model(sdk: openai.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 700}]  # the engine's context is 512
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=long, max_tokens=4, extra_headers={"x-slipstream-route": LOCAL}
    )
    assert raw.headers["x-slipstream-deployment"] == "openai/large"
    assert raw.parse().choices[0].message.content == "Hello there"


def test_engine_errors_keep_their_openai_shape(server: Served) -> None:
    r = httpx.post(
        server.api_url + "/completions",
        json={"model": "chat", "prompt": [1, 2, 10**7], "max_tokens": 1},
        headers={"x-slipstream-route": LOCAL},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    assert "outside the vocabulary" in r.json()["error"]["message"]
    r = httpx.post(
        server.api_url + "/embeddings",
        json={"model": "chat", "input": "hi"},
        headers={"x-slipstream-route": LOCAL},
    )
    assert r.status_code == 400 and "does not support embeddings" in r.json()["error"]["message"]


def test_local_requests_are_metered_by_the_gateway(server: Served) -> None:
    text = httpx.get(server.base_url + "/metrics").text
    assert 'slipstream:gateway_upstream_requests_total{deployment="local/smollm2-135m"' in text
    assert "slipstream:generation_tokens_total" in text  # engine metrics are still exported


def _gauge(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_client_leaving_a_non_stream_request_aborts_the_engine_work(server: Served) -> None:
    metrics = server.base_url + "/metrics"
    generated = "slipstream:generation_tokens_total"
    running = "slipstream:num_requests_running"
    before = _gauge(httpx.get(metrics).text, generated)
    body = {"model": "chat", "prompt": "Once upon a time", "max_tokens": 480, "ignore_eos": True}
    payload = orjson.dumps(body)
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"x-slipstream-route: {LOCAL}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode() + payload)
        deadline = time.monotonic() + 60
        while _gauge(httpx.get(metrics).text, running) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gauge(httpx.get(metrics).text, running) == 1  # generating, answer not sent
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        text = httpx.get(metrics).text
        if _gauge(text, running) == 0:
            break
        time.sleep(0.05)
    assert _gauge(text, running) == 0
    assert _gauge(text, generated) - before < 480  # stopped early, not run to max_tokens
