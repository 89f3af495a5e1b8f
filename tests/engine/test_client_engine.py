"""AsyncEngineClient against the real engine process running SmolLM2-135M."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import pytest

from slipstream.engine.client import (
    AsyncEngineClient,
    EngineDeadError,
    EngineStartupError,
    GenerationRequest,
    RequestRejectedError,
)
from slipstream.engine.config import EngineConfig
from slipstream.engine.types import SamplingParams


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def client(loop: asyncio.AbstractEventLoop) -> Iterator[AsyncEngineClient]:
    client = AsyncEngineClient(EngineConfig(model="smollm2-135m", max_model_len=256))
    loop.run_until_complete(client.start())
    yield client
    loop.run_until_complete(client.shutdown())


def greedy(max_tokens: int, **kw: object) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, **kw)  # type: ignore[arg-type]


async def run(client: AsyncEngineClient, request: GenerationRequest) -> tuple[str, list]:
    deltas = [d async for d in client.generate(request)]
    return "".join(d.text for d in deltas), deltas


def test_greedy_generation_matches_offline_decode(
    client: AsyncEngineClient, loop: asyncio.AbstractEventLoop
) -> None:
    prompt = client.tokenizer.encode("The capital of France is")
    text, deltas = loop.run_until_complete(run(client, GenerationRequest("g1", prompt, greedy(8))))
    ids = [t for d in deltas for t in d.token_ids]
    assert "Paris" in text
    assert len(ids) == 8 and deltas[-1].num_completion_tokens == 8
    assert deltas[-1].finish_reason == "length"
    assert text == client.tokenizer.decode(ids)
    assert deltas[-1].num_prompt_tokens == len(prompt)
    assert client.num_outstanding == 0


def test_stop_string_truncates_and_aborts_in_engine(
    client: AsyncEngineClient, loop: asyncio.AbstractEventLoop
) -> None:
    prompt = client.tokenizer.encode("The capital of France is")
    request = GenerationRequest("s1", prompt, greedy(40), stop=("."))
    text, deltas = loop.run_until_complete(run(client, request))
    assert text == " Paris"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].num_completion_tokens < 40
    loop.run_until_complete(asyncio.sleep(0.5))
    assert client.stats.num_running == 0 and client.stats.num_waiting == 0


def test_logprobs_carry_token_text(
    client: AsyncEngineClient, loop: asyncio.AbstractEventLoop
) -> None:
    prompt = client.tokenizer.encode("The capital of France is")
    request = GenerationRequest("l1", prompt, greedy(4, logprobs=3))
    text, deltas = loop.run_until_complete(run(client, request))
    entries = [e for d in deltas for e in d.logprobs or []]
    assert len(entries) == 4
    assert "".join(e.token for e in entries) == text
    for e in entries:
        assert len(e.top) == 3 and e.logprob <= 0
        # greedy: the chosen token is the most likely one
        assert e.top[0][1] == e.token_id


def test_closing_the_stream_aborts_the_request(
    client: AsyncEngineClient, loop: asyncio.AbstractEventLoop
) -> None:
    async def read_two_then_close() -> None:
        prompt = client.tokenizer.encode("Write a long story about a dragon.")
        gen = client.generate(GenerationRequest("a1", prompt, greedy(200, ignore_eos=True)))
        async with contextlib.aclosing(gen):
            for _ in range(2):
                await anext(gen)
        assert client.num_outstanding == 0
        deadline = time.monotonic() + 5
        while client.stats.num_running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    start = time.monotonic()
    loop.run_until_complete(read_two_then_close())
    assert client.stats.num_running == 0
    assert time.monotonic() - start < 10


def test_rejected_request_does_not_disturb_others(
    client: AsyncEngineClient, loop: asyncio.AbstractEventLoop
) -> None:
    async def both() -> tuple[BaseException | None, str]:
        good = client.tokenizer.encode("The capital of France is")
        ok = asyncio.create_task(run(client, GenerationRequest("ok1", good, greedy(6))))
        error = None
        try:
            await run(client, GenerationRequest("bad1", [1] * 300, greedy(6)))
        except RequestRejectedError as exc:
            error = exc
        text, _ = await ok
        return error, text

    error, text = loop.run_until_complete(both())
    assert error is not None and "maximum context length is 256" in str(error)
    assert "Paris" in text
    assert client.is_alive


def test_engine_crash_fails_in_flight_requests(
    client: AsyncEngineClient, loop: asyncio.AbstractEventLoop
) -> None:
    """Runs last in this module: it kills the shared engine process."""

    async def crash_mid_stream() -> BaseException | None:
        prompt = client.tokenizer.encode("Tell me about the sea.")
        gen = client.generate(GenerationRequest("c1", prompt, greedy(200, ignore_eos=True)))
        try:
            await anext(gen)
            os.kill(client._process.pid, signal.SIGKILL)
            async with asyncio.timeout(10):
                async for _ in gen:
                    pass
        except EngineDeadError as exc:
            return exc
        return None

    error = loop.run_until_complete(crash_mid_stream())
    assert error is not None and "exit" in str(error)
    assert not client.is_alive and client.dead_reason
    with pytest.raises(EngineDeadError):
        loop.run_until_complete(run(client, GenerationRequest("c2", [1, 2, 3], greedy(2))))


def test_unknown_model_fails_start_with_the_loader_message() -> None:
    client = AsyncEngineClient(EngineConfig(model="no-such-model-xyz"))
    with pytest.raises(EngineStartupError, match="no-such-model-xyz"):
        asyncio.run(client.start())
