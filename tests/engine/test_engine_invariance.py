"""The same greedy tokens whatever the batching: batch 1 vs 32 concurrent, prefix caching on and
off, several prefill chunk sizes, and under forced preemption with a tiny KV pool."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from slipstream.engine.config import CacheConfig, EngineConfig, SchedulerConfig
from slipstream.engine.engine import LLMEngine
from slipstream.engine.types import SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)


def make_prompts(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    shared = [rng.randrange(3, vocab) for _ in range(40)]  # a shared prefix across half of them
    prompts = []
    for i in range(n):
        tail = [rng.randrange(3, vocab) for _ in range(rng.randrange(1, 30))]
        prompts.append(([1, *shared] if i % 2 else [1]) + tail)
    return prompts


def engine(
    model: Path | str,
    *,
    blocks: int = 512,
    budget: int = 512,
    prefix: bool = True,
    block_size: int = 16,
    max_seqs: int = 64,
) -> LLMEngine:
    return LLMEngine(
        EngineConfig(
            model=str(model),
            dtype="float32",
            cache=CacheConfig(
                block_size=block_size, num_blocks=blocks, enable_prefix_caching=prefix
            ),
            scheduler=SchedulerConfig(max_num_batched_tokens=budget, max_num_seqs=max_seqs),
        )
    )


@pytest.fixture(scope="module")
def reference(tiny_llama_dir: Path) -> tuple[list[list[int]], list[list[int]]]:
    prompts = make_prompts(32, 384)
    eng = engine(tiny_llama_dir)
    solo = [eng.generate([p], GREEDY)[0] for p in prompts]
    return prompts, solo


def test_batch_of_32_equals_one_at_a_time(tiny_llama_dir: Path, reference) -> None:
    prompts, solo = reference
    assert engine(tiny_llama_dir).generate(prompts, GREEDY) == solo


@pytest.mark.parametrize("prefix", [True, False])
def test_prefix_caching_does_not_change_output(
    tiny_llama_dir: Path, reference, prefix: bool
) -> None:
    prompts, solo = reference
    eng = engine(tiny_llama_dir, prefix=prefix)
    # Run twice: the second pass hits the prefix cache when it is on.
    assert eng.generate(prompts, GREEDY) == solo
    assert eng.generate(prompts, GREEDY) == solo
    stats = eng.stats()
    if prefix:
        assert stats.prefix_cache_hits > 0
    else:
        assert stats.prefix_cache_hits == 0


@pytest.mark.parametrize("budget", [7, 16, 64])
def test_chunked_prefill_sizes(tiny_llama_dir: Path, reference, budget: int) -> None:
    prompts, solo = reference
    assert engine(tiny_llama_dir, budget=budget).generate(prompts, GREEDY) == solo


def test_forced_preemption_tiny_pool(tiny_llama_dir: Path, reference) -> None:
    prompts, solo = reference
    eng = engine(tiny_llama_dir, blocks=12, block_size=8)
    assert eng.generate(prompts, GREEDY) == solo
    assert eng.stats().num_preemptions > 0
    assert eng.stats().kv_cache_usage == 0.0


@pytest.mark.slow
def test_smollm2_batch_and_cache_invariance() -> None:
    from slipstream.engine.loader import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    questions = [
        "What is the capital of France?",
        "Name three primary colors.",
        "Write a haiku about the sea.",
        "What is 12 times 12?",
        "Explain what a CPU does in one sentence.",
        "Who wrote Romeo and Juliet?",
        "Give me a synonym for happy.",
        "What is the boiling point of water in Celsius?",
    ]
    prompts = [
        tok.encode(
            tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
        )
        for q in questions
    ]
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    eng = LLMEngine(EngineConfig(model="smollm2-135m", dtype="float32"))
    solo = [eng.generate([p], params)[0] for p in prompts]
    assert eng.generate(prompts, params) == solo
    small = LLMEngine(
        EngineConfig(
            model="smollm2-135m",
            dtype="float32",
            cache=CacheConfig(block_size=16, num_blocks=24),
            scheduler=SchedulerConfig(max_num_batched_tokens=48),
        )
    )
    assert small.generate(prompts, params) == solo
    assert small.stats().num_preemptions > 0
