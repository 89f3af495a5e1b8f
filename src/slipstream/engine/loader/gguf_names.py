"""GGUF (llama.cpp) tensor names → Hugging Face names, and undoing llama.cpp's Q/K permutation.

`convert_hf_to_gguf.py` reorders the rows of q_proj/k_proj for the llama architecture so that
llama.cpp can apply "interleaved" RoPE (pairs x[2i], x[2i+1]). Hugging Face applies `rotate_half`
RoPE (pairs x[i], x[i + d/2]), so loading a llama GGUF for HF-style models must put the rows back.
Qwen2/Qwen3 GGUFs use neox RoPE and are stored unpermuted.
"""

from __future__ import annotations

import re

import torch

from slipstream.engine.loader.errors import UnsupportedModelError

_GLOBAL_NAMES: dict[str, str] = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}

_BLOCK_NAMES: dict[str, str] = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)$")

# Tensors that carry no parameters of the HF model (read into ModelSpec instead, or unused).
NON_PARAMETER_TENSORS: frozenset[str] = frozenset({"rope_freqs.weight", "rope_factors_long.weight"})

# GGUF architectures whose q/k rows convert_hf_to_gguf permutes.
PERMUTED_ARCHITECTURES: frozenset[str] = frozenset({"llama", "mistral"})


def hf_name(gguf_name: str) -> str:
    """The Hugging Face parameter name for a GGUF tensor name."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK_RE.match(gguf_name)
    if match and match.group(2) in _BLOCK_NAMES:
        return f"model.layers.{match.group(1)}.{_BLOCK_NAMES[match.group(2)]}"
    raise UnsupportedModelError(
        f"Unexpected tensor {gguf_name!r} in GGUF file: not part of a llama/qwen2/qwen3 decoder."
    )


def unpermute_qk(tensor: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Inverse of convert_hf_to_gguf's `permute` for a q/k weight (2-D) or bias (1-D).

    The converter maps rows (head, 2, d/2) → (head, d/2, 2); we map them back.
    """
    rows = tensor.shape[0]
    head_dim = rows // num_heads
    return (
        tensor.reshape(num_heads, head_dim // 2, 2, *tensor.shape[1:])
        .transpose(1, 2)
        .reshape(tensor.shape)
        .contiguous()
    )
