"""Write tiny random models with gguf.GGUFWriter the way convert_hf_to_gguf does, load them back."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from slipstream.engine.loader import (
    UnsupportedModelError,
    load_model,
    load_tokenizer,
)
from slipstream.engine.loader.gguf_file import GGUFFile

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, VOCAB = 64, 4, 2, 16, 96, 2, 40

BLOCK_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def convert_permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """Verbatim logic of convert_hf_to_gguf.LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def random_hf_weights(arch: str, tied: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {
        "input_layernorm.weight": (HIDDEN,),
        "post_attention_layernorm.weight": (HIDDEN,),
        "self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
        "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
        "mlp.gate_proj.weight": (FFN, HIDDEN),
        "mlp.up_proj.weight": (FFN, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, FFN),
    }
    if arch == "qwen2":
        shapes["self_attn.q_proj.bias"] = (HEADS * HEAD_DIM,)
        shapes["self_attn.k_proj.bias"] = (KV_HEADS * HEAD_DIM,)
        shapes["self_attn.v_proj.bias"] = (KV_HEADS * HEAD_DIM,)
    if arch == "qwen3":
        shapes["self_attn.q_norm.weight"] = (HEAD_DIM,)
        shapes["self_attn.k_norm.weight"] = (HEAD_DIM,)
    weights = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    if not tied:
        weights["lm_head.weight"] = (VOCAB, HIDDEN)
    for i in range(LAYERS):
        weights.update({f"model.layers.{i}.{k}": v for k, v in shapes.items()})
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in weights.items()}


def write_gguf(path: Path, arch: str, weights: dict[str, np.ndarray], f16: bool = False) -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(LAYERS)
    writer.add_context_length(4096)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(500000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    tokens = ["<s>", "</s>", *[chr(ord("a") + i) for i in range(VOCAB - 2)]]
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3] + [1] * (VOCAB - 2))
    writer.add_token_merges([])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    for name, value in weights.items():
        if arch == "llama" and "q_proj" in name:
            value = convert_permute(value, HEADS, HEADS)
        elif arch == "llama" and "k_proj" in name:
            value = convert_permute(value, HEADS, KV_HEADS)
        if f16 and value.ndim == 2:
            value = value.astype(np.float16)
        writer.add_tensor(gguf_name(name), np.ascontiguousarray(value))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_name(hf_name: str) -> str:
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf_name in fixed:
        return fixed[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{BLOCK_NAMES[rest]}"


@pytest.mark.parametrize(
    ("arch", "tied"), [("llama", True), ("llama", False), ("qwen2", False), ("qwen3", True)]
)
def test_round_trip_restores_hf_weights(tmp_path, arch, tied):
    weights = random_hf_weights(arch, tied)
    path = tmp_path / f"tiny-{arch}.gguf"
    write_gguf(path, arch, weights)
    model = load_model(path)
    assert model.name == f"tiny-{arch}"
    assert set(model.weights) == set(weights)
    for name, expected in weights.items():
        got = model.weights[name]
        assert got.dtype == torch.float32
        assert torch.equal(got, torch.from_numpy(expected)), name
    spec = model.spec
    assert spec.architecture == arch
    assert (spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim) == (
        HIDDEN,
        HEADS,
        KV_HEADS,
        HEAD_DIM,
    )
    assert (spec.intermediate_size, spec.num_layers, spec.vocab_size) == (FFN, LAYERS, VOCAB)
    assert spec.tie_word_embeddings is tied
    assert spec.attention_bias is (arch == "qwen2")
    assert spec.qk_norm is (arch == "qwen3")
    assert spec.rope_theta == 500000.0
    assert spec.max_position_embeddings == 4096
    assert spec.rms_norm_eps == pytest.approx(1e-5)
    assert (spec.bos_token_id, spec.eos_token_ids) == (0, (1,))


def test_llama_q_k_really_are_unpermuted(tmp_path):
    """Guards against a loader that skips unpermuting: the stored rows differ from HF's."""
    weights = random_hf_weights("llama", tied=True)
    path = tmp_path / "m.gguf"
    write_gguf(path, "llama", weights)
    stored = GGUFFile(path).read_tensor("blk.0.attn_k.weight")
    original = torch.from_numpy(weights["model.layers.0.self_attn.k_proj.weight"])
    assert not torch.equal(stored, original)
    assert torch.equal(load_model(path).weights["model.layers.0.self_attn.k_proj.weight"], original)


def test_f16_weights_load_as_float32(tmp_path):
    weights = random_hf_weights("qwen2", tied=True)
    path = tmp_path / "half.gguf"
    write_gguf(path, "qwen2", weights, f16=True)
    got = load_model(path).weights["model.layers.1.mlp.down_proj.weight"]
    expected = weights["model.layers.1.mlp.down_proj.weight"].astype(np.float16).astype(np.float32)
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.from_numpy(expected))


def test_unsupported_architecture_is_named(tmp_path):
    path = tmp_path / "gemma.gguf"
    write_gguf(path, "gemma", random_hf_weights("llama", tied=True))
    with pytest.raises(UnsupportedModelError, match=r"'gemma'.*llama, mistral, qwen2, qwen3"):
        load_model(path)


def test_tiny_gguf_tokenizer_marks_control_tokens_special(tmp_path):
    path = tmp_path / "tok.gguf"
    write_gguf(path, "llama", random_hf_weights("llama", tied=True))
    tok = load_tokenizer(path)
    ids = tok.encode("</s>abc")
    assert ids == [1, 2, 3, 4]
    assert tok.decode(ids) == "abc"
    assert tok.decode(ids, skip_special_tokens=False) == "</s>abc"
    assert tok.eos_token_ids == frozenset({1})


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"not a gguf at all")
    with pytest.raises(UnsupportedModelError, match=r"broken\.gguf"):
        load_model(path)
