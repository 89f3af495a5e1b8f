"""The real SmolLM2-135M-Instruct GGUF: spec, weights, and a forward pass that answers correctly.

transformers' Llama implementation is the reference model here: if the loader returned wrongly
ordered (still llama.cpp-permuted) q/k rows, the greedy answer would be garbage.
"""

from __future__ import annotations

import pytest
import torch

from slipstream.engine.loader import LoadedModel, load_model


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_model("smollm2-135m")


def test_spec_and_weights(smollm2):
    spec = smollm2.spec
    assert (spec.architecture, spec.num_layers, spec.hidden_size) == ("llama", 30, 576)
    assert (spec.num_heads, spec.num_kv_heads, spec.head_dim) == (9, 3, 64)
    assert spec.tie_word_embeddings and "lm_head.weight" not in smollm2.weights
    assert spec.vocab_size == 49152 and spec.eos_token_ids == (2,)
    assert len(smollm2.weights) == 2 + 9 * spec.num_layers
    assert all(w.dtype == torch.float32 for w in smollm2.weights.values())
    assert smollm2.weights["model.layers.0.self_attn.k_proj.weight"].shape == (192, 576)


def test_reference_llama_answers_with_loaded_weights(smollm2, smollm2_tokenizer):
    transformers = pytest.importorskip("transformers")
    s = smollm2.spec
    config = transformers.LlamaConfig(
        vocab_size=s.vocab_size,
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_key_value_heads=s.num_kv_heads,
        head_dim=s.head_dim,
        rms_norm_eps=s.rms_norm_eps,
        rope_theta=s.rope_theta,
        max_position_embeddings=s.max_position_embeddings,
        tie_word_embeddings=s.tie_word_embeddings,
    )
    with torch.device("meta"):  # skip random init: every parameter is assigned below
        model = transformers.LlamaForCausalLM(config)
    model.load_state_dict(smollm2.weights, strict=False, assign=True)
    model.model.rotary_emb = type(model.model.rotary_emb)(config)  # a buffer, not in weights
    model.tie_weights()
    model.eval()
    prompt = smollm2_tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    ids = torch.tensor([smollm2_tokenizer.encode(prompt)])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    answer = smollm2_tokenizer.decode(out[0, ids.shape[1] :].tolist())
    assert "Paris" in answer
