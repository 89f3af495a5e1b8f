"""dtype="auto" on a CPU without fast bf16: block-int8 small steps and fused ops, close to exact.

A float32 asked for by name stays on the exact reference ops (the parity tests rely on it);
"auto" takes the fast path, whose answers must stay close to the exact ones.
"""

from __future__ import annotations

import pytest
import torch

from slipstream.engine.config import EngineConfig
from slipstream.engine.engine import LLMEngine
from slipstream.engine.loader import load_tokenizer
from slipstream.engine.runner.device import cpu_has_fast_bf16
from slipstream.engine.types import SamplingParams

pytestmark = pytest.mark.skipif(
    cpu_has_fast_bf16() or torch.cuda.is_available(),
    reason="dtype auto picks bfloat16 here; the float32 fast path is not the default",
)


def run(eng: LLMEngine, prompt: list[int], n: int) -> list[tuple[int, float, dict[int, float]]]:
    params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, logprobs=5)
    eng.add_request(f"r{len(prompt)}", prompt, params)
    got: list[tuple[int, float, dict[int, float]]] = []
    while eng.has_unfinished():
        for out in eng.step():
            for lp in out.new_logprobs or []:
                got.append((lp.token_id, lp.logprob, dict(lp.top)))
    return got


def test_auto_dtype_takes_the_fast_path_and_stays_close_to_exact() -> None:
    fast = LLMEngine(EngineConfig(model="smollm2-135m"))
    exact = LLMEngine(EngineConfig(model="smollm2-135m", dtype="float32"))
    if fast.runner.int8_small_batch_rows == 0:
        pytest.skip("the C++ layer kernels did not build here")
    assert fast.model_info.dtype == "float32"
    assert fast.runner.model.fused_cpu_ops
    assert exact.runner.int8_small_batch_rows == 0 and not exact.runner.model.fused_cpu_ops

    tok = load_tokenizer("smollm2-135m")
    for question in ("What is the capital of France?", "Name a primary colour."):
        text = tok.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True
        )
        prompt = tok.encode(text)
        fast_run = run(fast, prompt, 8)  # every token after the first from int8 decode steps
        # Teacher-force the exact engine along the fast path's tokens: each token the fast
        # path chose must be a best choice of the exact model up to rounding, and the logprob
        # it reported must match the exact one. Rounding: int8 weights and activations move
        # logprobs by up to ~0.2 nats on this model (llama.cpp's Q8 path does the same).
        for i, (token, fast_lp, _) in enumerate(fast_run):
            ((_, best_lp, top),) = run(exact, prompt + [t for t, _, _ in fast_run[:i]], 1)
            assert token in top, f"step {i}: exact top-5 {top} lacks the fast choice {token}"
            assert top[token] >= best_lp - 0.3
            assert abs(fast_lp - top[token]) < 0.3
