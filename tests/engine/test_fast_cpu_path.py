"""dtype="auto" on CPU with a block-quantized GGUF: quantized-weight kernels and fused ops.

A float32 asked for by name stays on the exact reference ops (the parity tests rely on it);
"auto" takes the fast path, whose answers must stay close to the exact ones.
"""

from __future__ import annotations

import pytest
import torch

from slipstream.engine.config import CacheConfig, EngineConfig
from slipstream.engine.engine import LLMEngine
from slipstream.engine.loader import load_model, load_tokenizer
from slipstream.engine.runner.device import cpu_has_fast_bf16, resolve_dtype
from slipstream.engine.types import SamplingParams

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="dtype auto picks bfloat16 on CUDA"
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


QUESTIONS = ("What is the capital of France?", "Name a primary colour.")


def chat_prompt(question: str) -> list[int]:
    tok = load_tokenizer("smollm2-135m")
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True
    )
    return tok.encode(text)


@pytest.fixture(scope="module")
def exact() -> LLMEngine:
    eng = LLMEngine(EngineConfig(model="smollm2-135m", dtype="float32"))
    assert eng.runner.int8_small_batch_rows == 0 and not eng.runner.model.fused_cpu_ops
    assert eng.runner.kv_dtype == torch.float32
    return eng


def test_auto_dtype_takes_the_fast_path_and_matches_exact(exact: LLMEngine) -> None:
    """int16 activations on the file's own 4/8-bit weights: the same greedy text as the fp32
    reference, logprobs equal to a few thousandths."""
    fast = LLMEngine(EngineConfig(model="smollm2-135m"))
    if fast.runner.int8_small_batch_rows == 0:
        pytest.skip("the C++ layer kernels did not build here")
    assert fast.model_info.dtype == "float32"
    assert fast.runner.model.fused_cpu_ops
    assert fast.runner.kv_dtype == torch.float16  # llama.cpp's cache type; half the reads
    assert fast.runner.model.layers[0].gate_up.q4 is not None  # Q4_1 in the file: 4-bit kept
    for question in QUESTIONS:
        prompt = chat_prompt(question)
        got, want = run(fast, prompt, 12), run(exact, prompt, 12)
        assert [t for t, _, _ in got] == [t for t, _, _ in want]
        for (_, g_lp, _), (_, w_lp, _) in zip(got, want, strict=True):
            assert abs(g_lp - w_lp) < 0.01


def test_int8_activations_stay_close_to_exact(exact: LLMEngine) -> None:
    """llama.cpp's numerics (activation_bits=8): near ties may flip, nothing worse."""
    fast = LLMEngine(EngineConfig(model="smollm2-135m", activation_bits=8))
    if fast.runner.int8_small_batch_rows == 0:
        pytest.skip("the C++ layer kernels did not build here")
    for question in QUESTIONS:
        prompt = chat_prompt(question)
        fast_run = run(fast, prompt, 8)
        # Teacher-force the exact engine along the fast path's tokens: each token the fast
        # path chose must be a best choice of the exact model up to rounding, and the logprob
        # it reported must match the exact one. Rounding: int8 activations move logprobs by up
        # to ~0.4 nats on this model (llama.cpp's Q8 path does the same).
        for i, (token, fast_lp, _) in enumerate(fast_run):
            ((_, best_lp, top),) = run(exact, prompt + [t for t, _, _ in fast_run[:i]], 1)
            assert token in top, f"step {i}: exact top-5 {top} lacks the fast choice {token}"
            assert top[token] >= best_lp - 0.5
            assert abs(fast_lp - top[token]) < 0.5


def test_activation_bits_must_be_8_or_16() -> None:
    with pytest.raises(ValueError, match="activation_bits must be 8 or 16"):
        LLMEngine(EngineConfig(model="smollm2-135m", activation_bits=12))


def test_auto_dtype_prefers_the_block_kernels_for_quantized_checkpoints() -> None:
    """A block-quantized GGUF runs float32 + 4/8-bit kernels on any CPU (they read 2-4x fewer
    bytes than bf16 and are faster at every batch size measured); a float checkpoint keeps
    bf16 where the CPU has fast bf16."""
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu, block_weights=True) == torch.float32
    float_ckpt = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    assert resolve_dtype("auto", cpu, block_weights=False) == float_ckpt
    assert resolve_dtype("float32", cpu, block_weights=False) == torch.float32
    assert resolve_dtype("bfloat16", cpu, block_weights=True) == torch.bfloat16


def test_the_embedded_gguf_reports_block_quantized_weights() -> None:
    assert load_model("smollm2-135m").block_quantized


def test_kv_cache_dtype_can_be_named_and_is_checked() -> None:
    cfg = EngineConfig(model="smollm2-135m", cache=CacheConfig(kv_cache_dtype="float32"))
    assert LLMEngine(cfg).runner.kv_dtype == torch.float32
    with pytest.raises(ValueError, match="unknown kv_cache_dtype 'fp7'"):
        LLMEngine(EngineConfig(model="smollm2-135m", cache=CacheConfig(kv_cache_dtype="fp7")))
