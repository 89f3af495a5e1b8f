"""Shared fixtures: tiny random-weight Hugging Face models saved as safetensors.

Weights are drawn with a large init range so greedy choices are well separated: near-ties
would make token parity depend on the last bit of a float sum, which is not what we test.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def _save_tiny(path: Path, family: str) -> Path:
    import torch
    import transformers

    common = dict(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        initializer_range=0.25,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    if family == "llama":
        config = transformers.LlamaConfig(rope_theta=10000.0, **common)
        model_cls = transformers.LlamaForCausalLM
    elif family == "qwen2":
        config = transformers.Qwen2Config(rope_theta=1000000.0, **common)
        model_cls = transformers.Qwen2ForCausalLM
    elif family == "qwen3":
        config = transformers.Qwen3Config(rope_theta=1000000.0, head_dim=16, **common)
        model_cls = transformers.Qwen3ForCausalLM
    else:  # pragma: no cover - test misuse
        raise ValueError(family)
    torch.manual_seed({"llama": 1, "qwen2": 2, "qwen3": 3}[family])
    model = model_cls(config).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.uniform_(0.8, 1.2)
    model.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny-qwen3"), "qwen3")
