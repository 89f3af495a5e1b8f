"""Attention over the paged KV cache.

The KV cache of one layer is a [num_blocks, block_size, kv_heads, head_dim] tensor for K and one
for V, in the compute dtype or a narrower one (float16 under float32 compute on CPU). Prefill chunks gather their blocks and run SDPA (GEMM-shaped work, which SDPA does well).
Decode tokens use the C++ paged kernel on CPU when it is available (it reads K/V in place),
otherwise this file's plain torch reference: gather whole blocks, mask the tail, SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slipstream.engine.attention.metadata import AttentionMetadata


class TorchPagedAttention:
    def __init__(
        self, num_heads: int, num_kv_heads: int, head_dim: int, use_cpu_kernel: bool = False
    ) -> None:
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.gqa = num_heads != num_kv_heads
        self.use_cpu_kernel = use_cpu_kernel

    def store(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> None:
        kh, d = k_cache.shape[2], k_cache.shape[3]
        k_cache.view(-1, kh, d).index_copy_(0, meta.slot_mapping, k.to(k_cache.dtype))
        v_cache.view(-1, kh, d).index_copy_(0, meta.slot_mapping, v.to(v_cache.dtype))

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
            out[:b] = self.decode(q[:b], k_cache, v_cache, meta)
        for chunk in meta.prefills:
            s, e = chunk.token_start, chunk.token_start + chunk.num_tokens
            ctx = chunk.context_len
            kp = k_cache.index_select(0, chunk.block_ids).flatten(0, 1)[:ctx]  # [L, Hkv, D]
            vp = v_cache.index_select(0, chunk.block_ids).flatten(0, 1)[:ctx]
            kp, vp = kp.to(q.dtype), vp.to(q.dtype)  # a float16 cache under float32 compute
            qp = q[s:e].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
            kp = kp.transpose(0, 1).unsqueeze(0)
            vp = vp.transpose(0, 1).unsqueeze(0)
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

    def decode(
        self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        assert meta.decode_block_tables is not None and meta.decode_seq_lens is not None
        if self.use_cpu_kernel:
            return torch.ops.slipstream_cpu.paged_decode(
                q.contiguous(),
                k_cache,
                v_cache,
                meta.decode_block_tables,
                meta.decode_seq_lens,
                self.scale,
            )
        return self.decode_reference(q, k_cache, v_cache, meta)

    def decode_reference(
        self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        assert meta.decode_block_tables is not None and meta.decode_seq_lens is not None
        tables = meta.decode_block_tables
        nb, bsz = tables.shape[0], tables.shape[1] * k_cache.shape[1]
        kd = k_cache.index_select(0, tables.view(-1)).view(
            nb, bsz, self.num_kv_heads, self.head_dim
        )
        vd = v_cache.index_select(0, tables.view(-1)).view(
            nb, bsz, self.num_kv_heads, self.head_dim
        )
        kd, vd = kd.to(q.dtype), vd.to(q.dtype)
        visible = torch.arange(bsz, device=q.device).unsqueeze(0) < meta.decode_seq_lens.unsqueeze(
            1
        )
        od = F.scaled_dot_product_attention(
            q.unsqueeze(2),
            kd.transpose(1, 2),
            vd.transpose(1, 2),
            attn_mask=visible[:, None, None, :],
            scale=self.scale,
            enable_gqa=self.gqa,
        )
        return od.squeeze(2)
