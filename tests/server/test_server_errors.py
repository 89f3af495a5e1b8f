"""Every user-caused failure is an OpenAI-shaped error with the right status, and none of them
disturbs a request that is running at the same time."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from slipstream.engine.config import EngineConfig, SchedulerConfig

MODEL = "smollm2-135m"
CONTEXT = 256
MAX_NUM_SEQS = 2
MAX_QUEUE = 2
HELLO = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., Any]) -> Any:
    config = EngineConfig(
        model=MODEL,
        max_model_len=CONTEXT,
        scheduler=SchedulerConfig(max_num_batched_tokens=256, max_num_seqs=MAX_NUM_SEQS),
    )
    return server_factory(config, max_queue=MAX_QUEUE)


@pytest.fixture(scope="module")
def http(server: Any) -> httpx.Client:
    return httpx.Client(base_url=server.api_url, timeout=60)


@pytest.fixture(scope="module")
def sdk(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module", autouse=True)
def background_stream(server: Any) -> Any:
    """A long request streaming while the error tests run; checked at the end of the module."""
    result: dict[str, Any] = {}

    def run() -> None:
        body = {"model": MODEL, "prompt": "Count:", "max_tokens": 120, "ignore_eos": True}
        with httpx.stream(
            "POST", server.api_url + "/completions", json={**body, "stream": True}, timeout=300
        ) as r:
            result["status"] = r.status_code
            result["lines"] = [line for line in r.iter_lines() if line.startswith("data:")]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield result
    thread.join(300)


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
        assert param.split(".")[0] in error["message"]
    return error


def chat(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/chat/completions", json={"model": MODEL, "messages": HELLO, **body})


def test_invalid_json_is_400(http: httpx.Client) -> None:
    r = http.post(
        "/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_error(r, 400)
    assert error["code"] == "invalid_json" and "JSON" in error["message"]


def test_non_object_body_is_400(http: httpx.Client) -> None:
    assert_error(http.post("/completions", json=[1, 2, 3]), 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hello"}, "messages"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "sometimes"}, "stream"),
        ({"max_tokens": 2.5}, "max_tokens"),
    ],
)
def test_wrong_types_are_400_not_422(http: httpx.Client, body: dict, param: str) -> None:
    assert_error(chat(http, **body), 400, param)


def test_unknown_model_is_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="gpt-17", messages=HELLO, max_tokens=2)
    error = info.value.body
    assert error["code"] == "model_not_found" and "gpt-17" in error["message"]
    assert MODEL in error["message"]


def test_empty_messages_is_400(http: httpx.Client) -> None:
    error = assert_error(chat(http, messages=[]), 400, "messages")
    assert "at least one message" in error["message"]


def test_prompt_longer_than_context_is_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.completions.create(model=MODEL, prompt="word " * 400, max_tokens=1)
    message = info.value.body["message"]
    assert f"maximum context length is {CONTEXT} tokens" in message
    match = re.search(r"your prompt has (\d+) tokens", message)
    assert match and int(match.group(1)) >= 400
    assert info.value.body["code"] == "context_length_exceeded"


def test_prompt_plus_max_tokens_beyond_context_is_400(http: httpx.Client) -> None:
    r = http.post("/completions", json={"model": MODEL, "prompt": [1000] * 200, "max_tokens": 100})
    error = assert_error(r, 400, "max_tokens")
    assert "you requested 300 tokens (200 in the prompt, 100 in the completion)" in error["message"]


def test_out_of_vocabulary_token_ids_are_400(http: httpx.Client) -> None:
    r = http.post("/completions", json={"model": MODEL, "prompt": [1, 2, 10**7], "max_tokens": 1})
    assert "outside the vocabulary" in assert_error(r, 400, "prompt")["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 0),
        ("top_p", 1.5),
        ("n", 0),
        ("n", 17),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("repetition_penalty", 0),
        ("max_tokens", 0),
        ("max_completion_tokens", 0),
        ("min_p", 1.5),
    ],
)
def test_bad_sampling_values_are_400_naming_the_field(
    http: httpx.Client, field: str, value: float
) -> None:
    error = assert_error(chat(http, **{field: value}), 400, field)
    assert repr(value) in error["message"] or str(value) in error["message"]


def test_top_logprobs_out_of_range_and_without_logprobs_are_400(http: httpx.Client) -> None:
    assert_error(chat(http, logprobs=True, top_logprobs=21), 400, "top_logprobs")
    error = assert_error(chat(http, top_logprobs=2), 400)
    assert "requires 'logprobs'" in error["message"]


def test_unknown_route_is_404(http: httpx.Client) -> None:
    error = assert_error(http.post("/embeddingz", json={}), 404)
    assert "/v1/embeddingz" in error["message"]


def test_wrong_method_is_405(http: httpx.Client) -> None:
    error = assert_error(http.get("/chat/completions"), 405)
    assert "GET" in error["message"]


def test_full_queue_is_503_with_retry_after(server: Any, http: httpx.Client) -> None:
    """max_num_seqs + max_queue = 4 engine requests at once; the background stream may hold one
    more: 3 held here plus 2 asked for is over the limit either way."""
    body = {"model": MODEL, "prompt": "Tell a story:", "max_tokens": 150, "ignore_eos": True}
    with httpx.stream(
        "POST", server.api_url + "/completions", json={**body, "n": 3, "stream": True}, timeout=60
    ) as held:
        assert held.status_code == 200
        lines = held.iter_lines()  # keep a reference: closing it would disconnect
        assert next(lines).startswith("data:")  # admitted and producing
        r = http.post("/completions", json={**body, "max_tokens": 2, "n": 2})
        error = assert_error(r, 503)
        assert r.headers["retry-after"] == "1" and error["code"] == "queue_full"
    # The closed stream frees its slots: a normal request is admitted again.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = http.post("/completions", json={**body, "max_tokens": 2})
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def test_normal_request_ran_through_all_the_errors(background_stream: dict, sdk: Any) -> None:
    r = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=20,
    )
    assert "Paris" in r.choices[0].message.content
    deadline = time.monotonic() + 240
    while "lines" not in background_stream and time.monotonic() < deadline:
        time.sleep(0.2)
    assert background_stream["status"] == 200
    lines = background_stream["lines"]
    assert lines[-1] == "data: [DONE]"
    assert '"finish_reason":"length"' in lines[-2]
    assert len(lines) >= 60  # it kept streaming while the errors above were answered


def test_engine_crash_fails_in_flight_requests_and_health(server: Any, http: httpx.Client) -> None:
    """Last in this module: kills this server's engine process."""
    body = {"model": MODEL, "prompt": "Tell a story:", "max_tokens": 200, "ignore_eos": True}
    with httpx.stream(
        "POST", server.api_url + "/completions", json={**body, "stream": True}, timeout=60
    ) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data:")
        (engine,) = [p for p in multiprocessing.active_children() if p.name == "slipstream-engine"]
        os.kill(engine.pid, signal.SIGKILL)
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    assert '"engine_unavailable"' in rest[-2]
    health = httpx.get(server.base_url + "/health")
    assert_error(health, 503)
    assert_error(http.post("/completions", json={**body, "max_tokens": 2}), 503)
