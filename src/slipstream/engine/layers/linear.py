"""A linear layer that can keep a second, int8 copy of its weight for small batches.

On CPU, decoding a handful of sequences is bound by reading the weights, so steps with at most
`int8_max_rows` tokens use an int8 copy (4x fewer bytes than fp32, 2x fewer than bf16) and
larger steps, which are compute-bound, stay on the dense GEMM. Two int8 schemes, by dtype:

  bfloat16  torch's weight-only kernel (`aten._weight_int8pack_mm`, one scale per output
            channel, bf16 activations); measured ~2x faster than bf16 GEMV at one row.
  float32   the block-int8 kernel in csrc/q8_linear.cpp (GGUF's Q8_0: a scale per 32 weights;
            activations quantized the same way on the fly, integer dot products as llama.cpp
            does); measured 2.5-6x faster than fp32 GEMV on an AVX2 CPU.

For GGUF models whose weights were 4- or 8-bit already, the extra rounding is tiny.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slipstream.engine.layers.cpu_ops import load_layer_kernels

Q8_BLOCK = 32


def q8_kernel_available() -> bool:
    """True when torch.ops.slipstream_cpu_linear.q8_linear is built and loaded."""
    return load_layer_kernels()


def quantize_q8_blocks(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, K] float -> int8 [N, K] and float32 scales [N, K/32] (symmetric, per 32-block)."""
    n, k = weight.shape
    blocks = weight.float().reshape(n, k // Q8_BLOCK, Q8_BLOCK)
    scale = blocks.abs().amax(dim=-1) / 127.0
    q = torch.round(blocks / scale.clamp(min=1e-12)[..., None]).clamp_(-127, 127)
    return q.to(torch.int8).reshape(n, k).contiguous(), scale.contiguous()


class Linear:
    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        int8_max_rows: int = 0,
    ) -> None:
        self.weight = weight
        self.bias = bias
        self.int8_max_rows = int8_max_rows
        self.w8: torch.Tensor | None = None
        self.s8: torch.Tensor | None = None
        self.block_q8 = False
        if int8_max_rows <= 0:
            return
        if weight.dtype == torch.float32:
            if weight.shape[1] % Q8_BLOCK == 0 and q8_kernel_available():
                self.w8, self.s8 = quantize_q8_blocks(weight)
                self.block_q8 = True
            return
        w = weight.float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.w8 = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
        self.s8 = scale.to(weight.dtype).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.w8 is not None and x.shape[0] <= self.int8_max_rows:
            if self.block_q8:
                return torch.ops.slipstream_cpu_linear.q8_linear(x, self.w8, self.s8, self.bias)
            y = torch.ops.aten._weight_int8pack_mm(x, self.w8, self.s8)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight, self.bias)


def int8_kernel_available(dtype: torch.dtype, device: torch.device) -> bool:
    """An int8 small-batch kernel exists here for this dtype (CPU only)."""
    if device.type != "cpu":
        return False
    if dtype == torch.float32:
        return q8_kernel_available()
    if dtype != torch.bfloat16:
        return False
    try:
        x = torch.ones(1, 32, dtype=dtype)
        w = torch.ones(8, 32, dtype=torch.int8)
        s = torch.ones(8, dtype=dtype)
        out = torch.ops.aten._weight_int8pack_mm(x, w, s)
    except (RuntimeError, AttributeError):
        return False
    return bool(torch.allclose(out.float(), torch.full((1, 8), 32.0)))
