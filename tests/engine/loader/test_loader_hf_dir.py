"""Hugging Face directories written by transformers' `save_pretrained` (safetensors)."""

from __future__ import annotations

import json

import pytest
import torch

from slipstream.engine.loader import (
    ModelNotFoundError,
    ModelSpec,
    UnsupportedModelError,
    load_model,
)

transformers = pytest.importorskip("transformers")

SMALL = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


def _save(tmp_path, config, **kwargs):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path, safe_serialization=True, **kwargs)
    return {k: v.float() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("config_cls", "arch", "tied"),
    [
        ("LlamaConfig", "llama", False),
        ("Qwen2Config", "qwen2", True),
        ("Qwen3Config", "qwen3", False),
    ],
)
def test_save_pretrained_dir_loads_identically(tmp_path, config_cls, arch, tied):
    config = getattr(transformers, config_cls)(
        **SMALL, tie_word_embeddings=tied, bos_token_id=3, eos_token_id=[4, 5]
    )
    expected = _save(tmp_path, config)
    model = load_model(tmp_path)
    if tied:
        expected.pop("lm_head.weight", None)
    assert set(model.weights) == set(expected)
    for name, value in expected.items():
        assert torch.equal(model.weights[name], value), name
    spec = model.spec
    assert spec.architecture == arch
    # Qwen3Config defaults head_dim to 128; the others derive it from hidden_size / heads.
    assert spec.head_dim == (128 if arch == "qwen3" else 32 // 4)
    assert (spec.num_heads, spec.num_kv_heads, spec.num_layers) == (4, 2, 2)
    assert spec.tie_word_embeddings is tied
    assert spec.attention_bias is (arch == "qwen2")
    assert spec.qk_norm is (arch == "qwen3")
    assert (spec.bos_token_id, spec.eos_token_ids) == (3, (4, 5))
    assert model.name == tmp_path.name


def test_sharded_bf16_checkpoint(tmp_path):
    config = transformers.LlamaConfig(**SMALL, dtype="bfloat16")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    loaded = load_model(tmp_path)
    for name, value in model.state_dict().items():
        assert loaded.weights[name].dtype == torch.float32
        assert torch.equal(loaded.weights[name], value.float()), name


def test_llama3_rope_scaling_both_config_generations():
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    }
    base = {**SMALL, "model_type": "llama", "max_position_embeddings": 131072}
    v4 = ModelSpec.from_hf_config({**base, "rope_theta": 500000.0, "rope_scaling": scaling})
    v5 = ModelSpec.from_hf_config({**base, "rope_parameters": {**scaling, "rope_theta": 500000.0}})
    assert v4 == v5
    assert v4.rope_theta == 500000.0
    assert v4.rope_scaling == scaling
    plain = ModelSpec.from_hf_config({**base, "rope_parameters": {"rope_type": "default"}})
    assert plain.rope_scaling is None


def test_mistral_config_is_supported():
    spec = ModelSpec.from_hf_config({**SMALL, "model_type": "mistral", "head_dim": 16})
    assert (spec.architecture, spec.head_dim, spec.attention_bias) == ("mistral", 16, False)


def test_unsupported_hf_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**SMALL, "model_type": "gpt_neox"}))
    with pytest.raises(UnsupportedModelError, match=r"'gpt_neox'.*llama, mistral, qwen2, qwen3"):
        load_model(tmp_path)


def test_dir_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**SMALL, "model_type": "llama"}))
    with pytest.raises(ModelNotFoundError, match=r"safetensors"):
        load_model(tmp_path)
