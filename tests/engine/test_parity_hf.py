"""Greedy tokens and logprobs match Hugging Face transformers (fp32, CPU).

Tolerance for logprobs: 1e-3 absolute for the tiny random models, 2e-2 for SmolLM2 from the
Q4_1 GGUF (both sides dequantize the same weights, but sum in a different order).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slipstream.engine.config import CacheConfig, EngineConfig, SchedulerConfig
from slipstream.engine.engine import LLMEngine
from slipstream.engine.types import SamplingParams

PROMPTS = [
    [1, 5, 9, 77, 3, 100, 42],
    [1, 300, 12, 12, 12, 250, 7, 8, 9, 10, 11, 200, 201],
    [1, 17],
    [1, *range(20, 60)],
]
NEW_TOKENS = 24


def hf_greedy(model_dir: Path, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            ids,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        tokens = out[0, len(prompt) :].tolist()
        logits = model(out).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    lps = [float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(tokens)]
    return tokens, lps


def engine_for(model: str | Path, **kw: object) -> LLMEngine:
    cache = kw.pop("cache", CacheConfig(num_blocks=256))
    sched = kw.pop("scheduler", SchedulerConfig())
    return LLMEngine(
        EngineConfig(model=str(model), dtype="float32", cache=cache, scheduler=sched, **kw)
    )  # type: ignore[arg-type]


def run_with_logprobs(
    engine: LLMEngine, prompts: list[list[int]], n: int
) -> list[tuple[list[int], list[float]]]:
    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, logprobs=0)
    ids = [f"p{i}" for i in range(len(prompts))]
    for rid, p in zip(ids, prompts, strict=True):
        engine.add_request(rid, p, params)
    toks: dict[str, list[int]] = {r: [] for r in ids}
    lps: dict[str, list[float]] = {r: [] for r in ids}
    while engine.has_unfinished():
        for out in engine.step():
            toks[out.request_id].extend(out.new_token_ids)
            assert out.new_logprobs is not None
            lps[out.request_id].extend(lp.logprob for lp in out.new_logprobs)
    return [(toks[r], lps[r]) for r in ids]


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_tiny_model_matches_transformers(family: str, request: pytest.FixtureRequest) -> None:
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    engine = engine_for(model_dir)
    ours = run_with_logprobs(engine, PROMPTS, NEW_TOKENS)
    for prompt, (tokens, lps) in zip(PROMPTS, ours, strict=True):
        ref_tokens, ref_lps = hf_greedy(model_dir, prompt, NEW_TOKENS)
        assert tokens == ref_tokens
        assert lps == pytest.approx(ref_lps, abs=1e-3)


@pytest.mark.slow
def test_smollm2_gguf_matches_transformers() -> None:
    import transformers

    from slipstream.engine.loader import load_tokenizer, resolve_model

    path = resolve_model("smollm2-135m").path
    tok = load_tokenizer("smollm2-135m")
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    prompt = tok.encode(text)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(Path(path).parent), gguf_file=Path(path).name, dtype=torch.float32
    ).eval()
    n = 20
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        logits = model(out).logits[0].float()
    ref = out[0, len(prompt) :].tolist()
    ref_lps = torch.log_softmax(logits, -1)
    engine = engine_for("smollm2-135m")
    [(tokens, lps)] = run_with_logprobs(engine, [prompt], n)
    assert tokens == ref
    want = [float(ref_lps[len(prompt) - 1 + i, t]) for i, t in enumerate(ref)]
    assert lps == pytest.approx(want, abs=2e-2)
    assert "Paris" in tok.decode(tokens)
