"""Reference attention backend in plain torch: gather K/V from the paged cache, then SDPA.

Works on any device. The KV cache of one layer is a flat [num_slots, kv_heads, head_dim]
tensor for K and one for V; slot = block_id * block_size + offset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slipstream.engine.attention.metadata import AttentionMetadata


class TorchPagedAttention:
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.gqa = num_heads != num_kv_heads

    def store(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> None:
        k_cache.index_copy_(0, meta.slot_mapping, k)
        v_cache.index_copy_(0, meta.slot_mapping, v)

    def forward(
        self,
        q: torch.Tensor,  # [T, heads, head_dim]
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        out = torch.empty_like(q)
        b = meta.num_decode
        if b:
            assert meta.decode_slots is not None and meta.decode_mask is not None
            qd = q[:b].unsqueeze(2)  # [B, H, 1, D]
            kd = k_cache[meta.decode_slots].transpose(1, 2)  # [B, Hkv, L, D]
            vd = v_cache[meta.decode_slots].transpose(1, 2)
            od = F.scaled_dot_product_attention(
                qd, kd, vd, attn_mask=meta.decode_mask, scale=self.scale, enable_gqa=self.gqa
            )
            out[:b] = od.squeeze(2)
        for chunk in meta.prefills:
            s, e = chunk.token_start, chunk.token_start + chunk.num_tokens
            qp = q[s:e].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
            kp = k_cache[chunk.context_slots].transpose(0, 1).unsqueeze(0)  # [1, Hkv, L, D]
            vp = v_cache[chunk.context_slots].transpose(0, 1).unsqueeze(0)
            if chunk.mask is None:
                op = F.scaled_dot_product_attention(
                    qp, kp, vp, is_causal=True, scale=self.scale, enable_gqa=self.gqa
                )
            else:
                op = F.scaled_dot_product_attention(
                    qp, kp, vp, attn_mask=chunk.mask, scale=self.scale, enable_gqa=self.gqa
                )
            out[s:e] = op.squeeze(0).transpose(0, 1)
        return out
