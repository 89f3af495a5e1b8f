"""Llama-family decoder over a flattened token batch and a paged KV cache.

Covers Llama 2/3 (and SmolLM2), Mistral, Qwen2 (qkv bias) and Qwen3 (per-head q/k RMSNorm).
Weights arrive with Hugging Face names; q/k/v and gate/up are fused at load so a layer runs
four matmuls instead of seven. Plain tensors and functional ops (no nn.Module per layer)
keep the per-step Python overhead low, which dominates small models on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from slipstream.engine.attention.metadata import AttentionMetadata
from slipstream.engine.attention.torch_paged import TorchPagedAttention
from slipstream.engine.layers.linear import Linear
from slipstream.engine.layers.rotary import RotaryEmbedding
from slipstream.engine.loader import ModelSpec

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass
class LayerWeights:
    input_norm: torch.Tensor
    qkv: Linear
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None
    o: Linear
    post_norm: torch.Tensor
    gate_up: Linear
    down: Linear


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Float32 statistics, result cast back: matches Hugging Face's LlamaRMSNorm."""
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


class LlamaModel:
    def __init__(
        self,
        spec: ModelSpec,
        weights: dict[str, torch.Tensor],
        device: torch.device,
        dtype: torch.dtype,
        max_positions: int,
        use_cpu_kernel: bool = False,
        int8_max_rows: int = 0,
        fused_cpu_ops: bool = False,
        act_bits: int = 16,
    ) -> None:
        if spec.architecture not in SUPPORTED_ARCHITECTURES:
            raise ValueError(
                f"unsupported architecture {spec.architecture!r}; "
                f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        self.spec = spec
        self.device = device
        self.dtype = dtype
        self.eps = spec.rms_norm_eps
        self.num_heads = spec.num_heads
        self.num_kv_heads = spec.num_kv_heads
        self.head_dim = spec.head_dim
        self.q_size = spec.num_heads * spec.head_dim
        self.kv_size = spec.num_kv_heads * spec.head_dim

        def take(name: str) -> torch.Tensor:
            if name not in weights:
                raise ValueError(f"model weights are missing tensor {name!r}")
            return weights[name].to(device=device, dtype=dtype).contiguous()

        def maybe(name: str) -> torch.Tensor | None:
            return take(name) if name in weights else None

        self.embed = take("model.embed_tokens.weight")
        self.norm = take("model.norm.weight")
        # Tied models ship no lm_head tensor and reuse the embedding matrix.
        head = take("lm_head.weight") if "lm_head.weight" in weights else self.embed
        self.lm_head = Linear(head, None, int8_max_rows=int8_max_rows, act_bits=act_bits)
        self.layers: list[LayerWeights] = []
        for i in range(spec.num_layers):
            p = f"model.layers.{i}."
            a = p + "self_attn."
            bias = None
            if spec.attention_bias or (a + "q_proj.bias") in weights:
                bias = torch.cat(
                    [take(a + "q_proj.bias"), take(a + "k_proj.bias"), take(a + "v_proj.bias")]
                )
            qkv = torch.cat(
                [take(a + "q_proj.weight"), take(a + "k_proj.weight"), take(a + "v_proj.weight")]
            )
            gate_up = torch.cat([take(p + "mlp.gate_proj.weight"), take(p + "mlp.up_proj.weight")])
            self.layers.append(
                LayerWeights(
                    input_norm=take(p + "input_layernorm.weight"),
                    qkv=Linear(qkv, bias, int8_max_rows=int8_max_rows, act_bits=act_bits),
                    q_norm=maybe(a + "q_norm.weight") if spec.qk_norm else None,
                    k_norm=maybe(a + "k_norm.weight") if spec.qk_norm else None,
                    o=Linear(
                        take(a + "o_proj.weight"),
                        None,
                        int8_max_rows=int8_max_rows,
                        act_bits=act_bits,
                    ),
                    post_norm=take(p + "post_attention_layernorm.weight"),
                    gate_up=Linear(gate_up, None, int8_max_rows=int8_max_rows, act_bits=act_bits),
                    down=Linear(
                        take(p + "mlp.down_proj.weight"),
                        None,
                        int8_max_rows=int8_max_rows,
                        act_bits=act_bits,
                    ),
                )
            )
        self.intermediate = spec.intermediate_size
        self.rotary = RotaryEmbedding(
            spec.head_dim,
            max_positions,
            spec.rope_theta,
            None if spec.rope_freq_factors else spec.rope_scaling,
            device,
            dtype,
            spec.rope_freq_factors,
        )
        self.attn = TorchPagedAttention(
            spec.num_heads, spec.num_kv_heads, spec.head_dim, use_cpu_kernel=use_cpu_kernel
        )
        # One C++ op each for RMSNorm(+residual), rotary and SiLU-mul (layers/cpu_ops.py):
        # float32 on CPU only, and only where exact parity with the reference is not promised.
        self.fused_cpu_ops = (
            fused_cpu_ops and device.type == "cpu" and dtype == torch.float32 and not spec.qk_norm
        )

    def kv_bytes_per_token(self, dtype: torch.dtype) -> int:
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * self.spec.num_layers * self.kv_size * elem

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """Hidden states [T, hidden] after the final norm."""
        x = F.embedding(input_ids, self.embed)
        if self.fused_cpu_ops:
            return self._forward_fused(x, positions, kv_caches, meta)
        cos, sin = self.rotary.tables(positions)
        t = x.shape[0]
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            h = rms_norm(x, layer.input_norm, self.eps)
            qkv = layer.qkv(h)
            q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
            q = q.reshape(t, self.num_heads, self.head_dim)
            k = k.reshape(t, self.num_kv_heads, self.head_dim)
            v = v.reshape(t, self.num_kv_heads, self.head_dim)
            if layer.q_norm is not None and layer.k_norm is not None:
                q = rms_norm(q, layer.q_norm, self.eps)
                k = rms_norm(k, layer.k_norm, self.eps)
            q = self.rotary.apply(q, cos, sin)
            k = self.rotary.apply(k, cos, sin)
            self.attn.store(k, v, k_cache, v_cache, meta)
            o = self.attn.forward(q, k_cache, v_cache, meta)
            x = x + layer.o(o.reshape(t, self.q_size))
            h = rms_norm(x, layer.post_norm, self.eps)
            gu = layer.gate_up(h)
            g, u = gu.split(self.intermediate, dim=-1)
            x = x + layer.down(F.silu(g) * u)
        return rms_norm(x, self.norm, self.eps)

    def _forward_fused(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """The same layer math as forward(), with the small ops fused (about 12 ops a layer)."""
        fused = torch.ops.slipstream_cpu_fused
        t = x.shape[0]
        qs, kvs = self.q_size, self.kv_size
        norms = [layer.input_norm for layer in self.layers[1:]] + [self.norm]
        h = fused.rms_norm(x, self.layers[0].input_norm, self.eps)
        for layer, (k_cache, v_cache), next_norm in zip(self.layers, kv_caches, norms, strict=True):
            qkv = layer.qkv(h)
            fused.rope_qk_(
                qkv,
                positions,
                self.rotary.cos,
                self.rotary.sin,
                self.num_heads,
                self.num_kv_heads,
                self.head_dim,
            )
            q = qkv[:, :qs].reshape(t, self.num_heads, self.head_dim)
            k = qkv[:, qs : qs + kvs].reshape(t, self.num_kv_heads, self.head_dim)
            v = qkv[:, qs + kvs :].reshape(t, self.num_kv_heads, self.head_dim)
            self.attn.store(k, v, k_cache, v_cache, meta)
            o = self.attn.forward(q, k_cache, v_cache, meta)
            h = fused.add_rms_norm_(x, layer.o(o.reshape(t, qs)), layer.post_norm, self.eps)
            a = fused.silu_mul(layer.gate_up(h))
            h = fused.add_rms_norm_(x, layer.down(a), next_norm, self.eps)
        return h

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()
