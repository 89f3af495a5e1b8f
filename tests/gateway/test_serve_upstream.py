"""`slipstream serve --config` in front of fake OpenAI-compatible upstreams (no engine): the
official SDKs, fallbacks on 500 and on a refused connection, the Anthropic front door,
embeddings, request ids, the overhead header, admin reload and a canary credential."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from tests.providers.fake_openai import make_app
from tests.providers.upstream_server import CANARY, FakeUpstream, refused_url

from .serve_harness import LogCapture, Served, start_serve

BAD_KEY_CANARY = "sk-second-canary-0a9b8c7d-NEVER-SHOWN"
MASTER = "master-canary-5e4d3c2b1a"
AUTH = {"authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]


def config_text(api_base: str, refused: str, extra_model: str = "") -> str:
    return f"""
master_key: env:SLIPSTREAM_TEST_MASTER
database_url: env:SLIPSTREAM_TEST_DB
models:
  - name: chat                     # first deployment answers 500: fall back to chat-backup
    deployments:
      - provider: openai
        name: broken
        model: fail-500
        api_base: {api_base}/v1
        api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY
    retries: {{max: 0}}
    circuit_breaker: {{consecutive_failures: 1000, min_requests: 1000}}
    fallbacks: [chat-backup]
  - name: refused                  # nothing listens there: fall back to chat-backup
    deployments:
      - provider: openai
        model: good
        api_base: {refused}/v1
        api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY
    retries: {{max: 0}}
    fallbacks: [chat-backup]
  - name: chat-backup
    deployments:
      - provider: openai
        name: backup
        model: good
        api_base: {api_base}/v1
        api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY
  - name: badkey                   # the upstream echoes the wrong key in its 401
    deployments:
      - provider: openai
        model: good
        api_base: {api_base}/v1
        api_key: env:SLIPSTREAM_TEST_BAD_KEY
    retries: {{max: 0}}
  - name: embed
    deployments:
      - provider: openai
        model: text-embedder
        api_base: {api_base}/v1
        api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY
{extra_model}"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    # A master key turns tenancy on; keep its SQLite ledger out of the working directory.
    mp.setenv("SLIPSTREAM_TEST_DB", f"sqlite:///{tmp_path_factory.mktemp('db') / 'slip.db'}")
    mp.setenv("SLIPSTREAM_TEST_UPSTREAM_KEY", CANARY)
    mp.setenv("SLIPSTREAM_TEST_BAD_KEY", BAD_KEY_CANARY)
    mp.setenv("SLIPSTREAM_TEST_MASTER", MASTER)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(make_app(CANARY)) as up:
        yield up


@pytest.fixture(scope="module")
def logs() -> Iterator[LogCapture]:
    with LogCapture() as capture:
        yield capture


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Path:
    path = tmp_path_factory.mktemp("serve") / "slipstream.yaml"
    path.write_text(config_text(upstream.url, refused_url()))
    return path


@pytest.fixture(scope="module")
def server(env: None, config_file: Path, logs: LogCapture) -> Iterator[Served]:
    served = start_serve(config_file)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def seen(server: Served) -> list[str]:
    """Every response body and header block this module read, for the canary check."""
    return []


@pytest.fixture(scope="module")
def sdk(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=MASTER, max_retries=0)


def received(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return upstream.server.config.app.state.received


def post(server: Served, path: str, seen: list[str], **kw: Any) -> httpx.Response:
    # master_key is set, so tenancy auth is on: the master key is a valid client key too.
    kw["headers"] = {**AUTH, **kw.get("headers", {})}
    r = httpx.post(server.api_url + path, timeout=30, **kw)
    seen.append(r.text + repr(dict(r.headers)))
    return r


def test_no_engine_is_started_without_a_local_deployment(server: Served) -> None:
    names = [p.name for p in multiprocessing.active_children()]
    assert "slipstream-engine" not in names
    assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}


def test_openai_sdk_falls_back_on_500(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    before = len(received(upstream))
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=HI)
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello there"
    assert raw.headers["x-slipstream-deployment"] == "backup"
    models = [orjson.loads(r["raw"])["model"] for r in received(upstream)[before:]]
    assert models == ["fail-500", "good"]  # the 500 was really tried first


def test_openai_sdk_stream_falls_back_on_refused_connection(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="refused", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13


def test_completions_and_embeddings_pass_through(sdk: openai.OpenAI) -> None:
    text = sdk.completions.create(model="chat-backup", prompt="Say hi")
    assert text.choices[0].text == "Hello there"
    vectors = sdk.embeddings.create(model="embed", input="hello")
    assert vectors.data[0].embedding == [0.1, 0.2, 0.3]


def test_anthropic_sdk_non_stream_and_stream(server: Served) -> None:
    client = anthropic.Anthropic(base_url=server.base_url, api_key=MASTER, max_retries=0)
    message = client.messages.create(model="chat", max_tokens=16, messages=HI, system="Be brief")
    assert message.content[0].text == "Hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 2 and message.usage.cache_read_input_tokens == 4
    with client.messages.stream(model="refused", max_tokens=16, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there" and final.content[0].text == "Hello there"
    assert final.usage.output_tokens == 2


def test_anthropic_errors_have_the_anthropic_shape(server: Served) -> None:
    client = anthropic.Anthropic(base_url=server.base_url, api_key=MASTER, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="nope", max_tokens=4, messages=HI)
    assert info.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="chat", max_tokens=0, messages=HI)
    assert "max_tokens" in bad.value.body["error"]["message"]


def test_request_id_is_propagated_upstream_and_generated(
    server: Served, upstream: FakeUpstream, seen: list[str]
) -> None:
    body = {"model": "chat-backup", "messages": HI}
    r = post(server, "/chat/completions", seen, json=body, headers={"x-request-id": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    assert received(upstream)[-1]["headers"]["x-request-id"] == "trace-42"
    r = post(server, "/chat/completions", seen, json=body)
    generated = r.headers["x-request-id"]
    assert len(generated) == 32 and received(upstream)[-1]["headers"]["x-request-id"] == generated


def test_overhead_header_on_every_response(server: Served, seen: list[str]) -> None:
    ok = post(server, "/chat/completions", seen, json={"model": "chat-backup", "messages": HI})
    bad_json = post(server, "/chat/completions", seen, content=b"{nope")
    unknown = post(server, "/chat/completions", seen, json={"model": "nope", "messages": HI})
    assert (ok.status_code, bad_json.status_code, unknown.status_code) == (200, 400, 404)
    for r in (ok, bad_json, unknown, httpx.get(server.api_url + "/models")):
        assert 0 <= float(r.headers["x-slipstream-overhead-ms"]) < 1000
        assert r.headers["x-request-id"]
    body = {"model": "chat-backup", "messages": HI, "stream": True}
    with httpx.stream("POST", server.api_url + "/chat/completions", json=body, headers=AUTH) as r:
        assert 0 <= float(r.headers["x-slipstream-overhead-ms"]) < 1000
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"


def test_models_lists_public_names_only(server: Served, seen: list[str]) -> None:
    r = httpx.get(server.api_url + "/models")
    seen.append(r.text)
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["chat", "refused", "chat-backup", "badkey", "embed"]
    assert "api_base" not in r.text and "127.0.0.1" not in r.text


def test_admin_reload_needs_the_master_key_and_swaps_the_config(
    server: Served, config_file: Path, upstream: FakeUpstream, seen: list[str]
) -> None:
    url = server.base_url + "/admin/reload"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    auth = {"authorization": f"Bearer {MASTER}"}
    original = config_file.read_text()
    extra = "  - name: extra\n    deployments:\n      - {provider: openai, model: good, api_base: "
    extra += f"{upstream.url}/v1, api_key: env:SLIPSTREAM_TEST_UPSTREAM_KEY}}\n"
    try:
        config_file.write_text(original + extra)
        r = httpx.post(url, headers=auth)
        assert r.status_code == 200 and "extra" in r.json()["models"]
        config_file.write_text(original.replace("retries: {max: 0}", "retries: {max: -1}", 1))
        r = httpx.post(url, headers=auth)
        seen.append(r.text)
        assert r.status_code == 400 and "models[0].retries.max" in r.json()["error"]["message"]
        ids = [m["id"] for m in httpx.get(server.api_url + "/models").json()["data"]]
        assert "extra" in ids  # a bad file keeps the running config
    finally:
        config_file.write_text(original)
        httpx.post(url, headers=auth)


def test_canary_secrets_never_leave_the_gateway(
    server: Served, logs: LogCapture, seen: list[str]
) -> None:
    r = post(server, "/chat/completions", seen, json={"model": "badkey", "messages": HI})
    assert r.status_code in (401, 502, 503) and r.json()["error"]["message"]
    body = {"model": "badkey", "messages": HI, "stream": True}
    with httpx.stream("POST", server.api_url + "/chat/completions", json=body, headers=AUTH) as s:
        seen.append(s.read().decode() + repr(dict(s.headers)))
    anthropic_error = post(
        server, "/messages", seen, json={"model": "badkey", "max_tokens": 4, "messages": HI}
    )
    assert anthropic_error.json()["type"] == "error"
    seen.append(httpx.get(server.base_url + "/metrics").text)
    seen.append(httpx.get(server.api_url + "/models").text)
    request_lines = [orjson.loads(line) for line in logs.lines if line.startswith("{")]
    assert any(rec.get("model") == "badkey" and rec["status"] >= 400 for rec in request_lines)
    assert any(rec.get("request_id") == "trace-42" for rec in request_lines)
    everything = "\n".join([*seen, *logs.lines])
    for secret in (CANARY, BAD_KEY_CANARY, MASTER):
        assert secret not in everything
