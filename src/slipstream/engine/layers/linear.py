"""A linear layer that can keep a second, int8 copy of its weight for small batches.

On CPU, decoding a handful of sequences is bound by reading the weights: bf16 GEMV in torch
streams them no faster than fp32, while torch's int8 weight-only kernel
(`aten._weight_int8pack_mm`, per-output-channel scales) reads half the bytes and runs about
2x faster at one row (measured, docs/benchmarks.md). Large batches are compute-bound and stay
on the dense bf16 GEMM, which is faster there. The int8 copy is symmetric per output channel;
for GGUF models whose weights were 4- or 8-bit already, the extra rounding is tiny.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
        if int8_max_rows > 0:
            w = weight.float()
            scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
            self.w8 = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
            self.s8 = scale.to(weight.dtype).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.w8 is not None and x.shape[0] <= self.int8_max_rows:
            y = torch.ops.aten._weight_int8pack_mm(x, self.w8, self.s8)
            return y if self.bias is None else y + self.bias
        return F.linear(x, self.weight, self.bias)


def int8_kernel_available(dtype: torch.dtype, device: torch.device) -> bool:
    """The int8 weight-only kernel exists and is fast for bf16 activations on CPU."""
    if device.type != "cpu" or dtype != torch.bfloat16:
        return False
    try:
        x = torch.ones(1, 32, dtype=dtype)
        w = torch.ones(8, 32, dtype=torch.int8)
        s = torch.ones(8, dtype=dtype)
        out = torch.ops.aten._weight_int8pack_mm(x, w, s)
    except (RuntimeError, AttributeError):
        return False
    return bool(torch.allclose(out.float(), torch.full((1, 8), 32.0)))
