"""The local provider against the real embedded engine (SmolLM2-135M in an engine process)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from slipstream.engine.client import AsyncEngineClient
from slipstream.engine.config import EngineConfig, SchedulerConfig
from slipstream.providers.base import Endpoint, ErrorKind, ProviderError, ProviderRequest
from slipstream.providers.local import LocalEngineProvider

T = TypeVar("T")

pytestmark = pytest.mark.slow  # starts a real engine process (~20-30 s on 2 shared cores)


class EngineLoop:
    """One engine client on its own event loop thread, shared by the module's tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = EngineConfig(
            model="smollm2-135m",
            max_model_len=256,
            scheduler=SchedulerConfig(max_num_batched_tokens=256, max_num_seqs=4),
        )
        self.client = AsyncEngineClient(config)
        self.run(self.client.start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def close(self) -> None:
        self.run(self.client.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineLoop]:
    loop = EngineLoop()
    yield loop
    loop.close()


def req(body: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> ProviderRequest:
    return ProviderRequest(endpoint, body, bool(body.get("stream")), "local-1")


def chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 8,
        "temperature": 0,
        **extra,
    }


def test_complete_chat_and_completions(engine):
    provider = LocalEngineProvider(engine.client, model="smollm2-135m")
    response = engine.run(provider.complete(req(chat())))
    choice = response.body["choices"][0]
    assert response.body["object"] == "chat.completion"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    assert response.usage.prompt_tokens > 3 and 0 < response.usage.completion_tokens <= 8
    body = {
        "model": "smollm2-135m",
        "prompt": "The capital of France is",
        "max_tokens": 4,
        "temperature": 0,
    }
    response = engine.run(provider.complete(req(body, Endpoint.COMPLETIONS)))
    assert response.body["object"] == "text_completion"
    assert (
        response.usage.completion_tokens == 4
        and response.body["choices"][0]["finish_reason"] == "length"
    )


def test_stream_matches_complete_and_reports_usage(engine):
    provider = LocalEngineProvider(engine.client)
    whole = engine.run(provider.complete(req(chat())))

    async def collect():
        return [
            c
            async for c in provider.stream(
                req(chat(stream=True, stream_options={"include_usage": True}))
            )
        ]

    chunks = engine.run(collect())
    assert chunks[0].data["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(
        c.data["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if c.data and c.data["choices"]
    )
    assert text == whole.body["choices"][0]["message"]["content"]  # greedy: same answer
    assert (
        chunks[-1].data["choices"] == []
        and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    )


def test_context_window_and_bad_requests(engine):
    provider = LocalEngineProvider(engine.client)
    with pytest.raises(ProviderError) as info:
        engine.run(provider.complete(req(chat(max_tokens=1000))))
    assert (info.value.kind, info.value.status) == (ErrorKind.CONTEXT_WINDOW, 400)
    with pytest.raises(ProviderError) as info:
        engine.run(provider.complete(req({"model": "x", "messages": "not a list"})))
    assert info.value.kind is ErrorKind.BAD_REQUEST
    with pytest.raises(ProviderError) as info:
        engine.run(provider.complete(req({"model": "x", "input": "hi"}, Endpoint.EMBEDDINGS)))
    assert info.value.kind is ErrorKind.BAD_REQUEST
