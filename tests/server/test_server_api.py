"""The OpenAI API end to end: official `openai` SDK → real HTTP server → real engine (SmolLM2)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

MODEL = "smollm2-135m"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., Any]) -> Any:
    return server_factory()


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key="unused", max_retries=0)


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (("{" + labels + "}") if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_chat_answers_paris_greedy(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=24)
    choice = r.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant"
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens > 10
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream_and_sends_usage_last(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, messages=FRANCE, temperature=0, max_tokens=12)
    full = client.chat.completions.create(**kw)
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=FRANCE, max_tokens=3, temperature=0, stream=True
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason


def test_completion_non_stream_and_stream(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=6)
    r = client.completions.create(**kw)
    assert r.object == "text_completion"
    assert "Paris" in r.choices[0].text
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 6
    chunks = list(
        client.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage.completion_tokens == 6


def test_completion_accepts_token_ids_and_prompt_lists(client: openai.OpenAI) -> None:
    by_text = client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=4
    )
    ids = client.completions.create(
        model=MODEL,
        prompt=["The capital of France is", "One, two, three,"],
        temperature=0,
        max_tokens=4,
    )
    assert [c.index for c in ids.choices] == [0, 1]
    assert ids.choices[0].text == by_text.choices[0].text
    assert ids.usage.completion_tokens == 8


def test_n2_returns_two_choices_and_seeded_sampling_repeats(client: openai.OpenAI) -> None:
    kw = dict(
        model=MODEL,
        messages=FRANCE,
        n=2,
        temperature=1.0,
        seed=7,
        max_tokens=8,
        extra_body={"ignore_eos": True},
    )
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert a.usage.completion_tokens == 16
    streamed = list(client.chat.completions.create(**kw, stream=True))
    for i in (0, 1):
        text = "".join(
            c.choices[0].delta.content or ""
            for c in streamed
            if c.choices and c.choices[0].index == i
        )
        assert text == a.choices[i].message.content


def test_chat_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_tokens=5, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].token == t.token  # greedy picks the most likely token
        assert bytes(t.bytes).decode() == t.token


def test_completion_logprobs(client: openai.OpenAI) -> None:
    r = client.completions.create(
        model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=4, logprobs=2
    )
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])
    assert all(len(t) == 2 for t in lp.top_logprobs)


def test_stop_strings(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=20)
    r = client.completions.create(**kw, stop=["."])
    assert r.choices[0].text == " Paris" and r.choices[0].finish_reason == "stop"
    r = client.completions.create(**kw, stop=".", extra_body={"include_stop_str_in_output": True})
    assert r.choices[0].text == " Paris."
    chunks = list(client.completions.create(**kw, stop=[".", "zzz"], stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " Paris"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_repeated_long_prompt_reports_cached_tokens(client: openai.OpenAI) -> None:
    story = "In a quiet village by the sea, a young fisher named Lio kept a notebook. " * 12
    kw = dict(model=MODEL, prompt=story, temperature=0, max_tokens=2)
    first = client.completions.create(**kw, extra_body={"cache_salt": f"salt-{time.time()}"})
    again = client.completions.create(**kw, extra_body={"cache_salt": first.id})
    assert again.usage.prompt_tokens_details.cached_tokens == 0  # a new salt: no reuse
    repeat = client.completions.create(**kw, extra_body={"cache_salt": first.id})
    assert repeat.usage.prompt_tokens > 100
    assert repeat.usage.prompt_tokens_details.cached_tokens >= 64


def test_models_health_openapi(client: openai.OpenAI, server: Any) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert httpx.get(server.base_url + "/health").status_code == 200
    doc = httpx.get(server.base_url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= set(doc["paths"])
    assert "ChatCompletionRequest" in doc["components"]["schemas"]


METRIC_NAMES = [
    "slipstream:time_to_first_token_seconds",
    "slipstream:inter_token_latency_seconds",
    "slipstream:e2e_request_latency_seconds",
    "slipstream:request_queue_time_seconds",
    "slipstream:num_requests_running",
    "slipstream:num_requests_waiting",
    "slipstream:kv_cache_usage_perc",
    "slipstream:prefix_cache_queries_total",
    "slipstream:prefix_cache_hits_total",
    "slipstream:prompt_tokens_total",
    "slipstream:generation_tokens_total",
    "slipstream:num_preemptions_total",
    "slipstream:request_success_total",
]


def test_metrics_exist_and_move(client: openai.OpenAI, server: Any) -> None:
    before = httpx.get(server.base_url + "/metrics").text
    for name in METRIC_NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in before, name
    r = client.completions.create(model=MODEL, prompt="Hello there", temperature=0, max_tokens=5)
    after = httpx.get(server.base_url + "/metrics").text
    gen = "slipstream:generation_tokens_total"
    assert metric(after, gen) - metric(before, gen) == r.usage.completion_tokens
    prompt = "slipstream:prompt_tokens_total"
    assert metric(after, prompt) - metric(before, prompt) == r.usage.prompt_tokens
    for hist in ("time_to_first_token", "e2e_request_latency", "request_queue_time"):
        name = f"slipstream:{hist}_seconds_count"
        assert metric(after, name) == metric(before, name) + 1
    itl = "slipstream:inter_token_latency_seconds_count"
    assert metric(after, itl) >= metric(before, itl) + 4
    success = ("slipstream:request_success_total", 'finished_reason="length"')
    assert metric(after, *success) == metric(before, *success) + 1
    queries = "slipstream:prefix_cache_queries_total"
    assert metric(after, queries) > metric(before, queries)


def test_client_disconnect_mid_stream_frees_the_request(server: Any) -> None:
    body = {
        "model": MODEL,
        "prompt": "Once upon a time",
        "max_tokens": 400,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", server.api_url + "/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        got: list[str] = []
        # Keep a reference to the iterator: a `for` over a temporary one closes it (and with it
        # the connection) as soon as the loop breaks, which is a disconnect already.
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data:"):
                got.append(line)
            if len(got) == 3:
                break
        # The engine publishes its stats once per step; poll briefly for the running request.
        running = 0.0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and running != 1:
            running = metric(
                httpx.get(server.base_url + "/metrics").text, "slipstream:num_requests_running"
            )
            if running != 1:
                time.sleep(0.05)
        assert running == 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = httpx.get(server.base_url + "/metrics").text
        if metric(text, "slipstream:num_requests_running") == 0:
            break
        time.sleep(0.1)
    assert metric(text, "slipstream:num_requests_running") == 0
    assert metric(text, "slipstream:kv_cache_usage_perc") == 0


def test_content_parts_and_max_completion_tokens(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_completion_tokens=6
    )
    parts = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is the capital "},
                    {"type": "text", "text": "of France?"},
                ],
            }
        ],
        temperature=0,
        max_completion_tokens=6,
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
    assert plain.usage.completion_tokens <= 6
