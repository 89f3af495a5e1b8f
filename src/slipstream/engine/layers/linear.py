"""A linear layer that can keep a second, int8 copy of its weight for small batches.

On CPU, decoding a handful of sequences is bound by reading the weights, so steps with at most
`int8_max_rows` tokens use an int8 copy (4x fewer bytes than fp32, 2x fewer than bf16) and
larger steps, which are compute-bound, stay on the dense GEMM. Two int8 schemes, by dtype:

  bfloat16  torch's weight-only kernel (`aten._weight_int8pack_mm`, one scale per output
            channel, bf16 activations); measured ~2x faster than bf16 GEMV at one row.
  float32   the block kernels in csrc/, activations quantized to blocks of 32 on the fly and
            integer dot products: int16 activations by default (results within float
            rounding of the fp32 math), or int8 ones (`activation_bits=8`: llama.cpp's
            numerics, ~1.5-2x faster on batched steps, logprobs off by up to ~0.4 nats). Weights that are
            4-bit already (they came from a Q4_0/Q4_1/Q4_K GGUF: every block of 32 holds at
            most 16 evenly spaced values) keep exactly those values in Q4_1 blocks (0.625
            bytes a weight); any other weight becomes Q8_0 blocks (int8, a scale per 32).

The engine never stores a weight with less precision than its file gave it, beyond the int8
rounding of Q8_0 blocks, which is tiny.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slipstream.engine.layers.cpu_ops import load_layer_kernels

Q8_BLOCK = 32


def q8_kernel_available() -> bool:
    """True when torch.ops.slipstream_cpu_linear.q8_linear is built and loaded."""
    return load_layer_kernels()


def fp16_exact(t: torch.Tensor) -> bool:
    """Scales must survive fp16 storage (GGUF's own scales always do)."""
    back = t.half().float()
    return bool(((back - t).abs() <= 1e-3 * t.abs() + 1e-12).all())


def quantize_q8_blocks(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """[N, K] float -> int8 [N, K] and fp16 scales [N, K/32] (symmetric, per 32-block); None
    when a scale does not fit fp16 (weights far outside any real model's range)."""
    n, k = weight.shape
    blocks = weight.float().reshape(n, k // Q8_BLOCK, Q8_BLOCK)
    scale = blocks.abs().amax(dim=-1) / 127.0
    if not fp16_exact(scale):
        return None
    scale = scale.half().float()  # quantize against the scale the kernel will read
    q = torch.round(blocks / scale.clamp(min=1e-12)[..., None]).clamp_(-127, 127)
    return q.to(torch.int8).reshape(n, k).contiguous(), scale.half().contiguous()


def interleave_q4x8(packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Q4_1 blocks -> the records q4x8_linear reads: per (8 rows, block of 32) 128 bytes of
    nibbles (byte s*32 + n*4 + i = q[n][4s+i] | q[n][16+4s+i] << 4), then d[8], m[8] as fp16."""
    nibbles, d, m = packed
    n, half = nibbles.shape
    kb = half // 16
    g = n // 8
    nib = nibbles.reshape(g, 8, kb, 16)
    q = torch.cat([nib & 15, nib >> 4], dim=-1)  # [G, 8, KB, 32] values, element order
    q = q.permute(0, 2, 1, 3)  # [G, KB, 8, 32]
    lo = q[..., :16].reshape(g, kb, 8, 4, 4).permute(0, 1, 3, 2, 4)  # [G, KB, s, n, i]
    hi = q[..., 16:].reshape(g, kb, 8, 4, 4).permute(0, 1, 3, 2, 4)
    body = (lo | (hi << 4)).reshape(g, kb, 128)

    def per_group(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(g, 8, kb).permute(0, 2, 1).contiguous().view(torch.uint8)

    return torch.cat([body, per_group(d), per_group(m)], dim=-1).contiguous()


def interleave_q8x8(w8: torch.Tensor, s8: torch.Tensor) -> torch.Tensor:
    """Q8 blocks (int8 [N, K], fp16 scales [N, K/32]) -> the records q8x8_linear reads: per
    (8 rows, block of 32) 256 weight bytes (byte s*32 + n*4 + i = q[n][4s+i]), d[8] fp16 and
    the rows' block sums wsum[8] int16."""
    n, k = w8.shape
    kb, g = k // Q8_BLOCK, n // 8
    q = w8.reshape(g, 8, kb, Q8_BLOCK).permute(0, 2, 1, 3)  # [G, KB, 8, 32]
    body = q.reshape(g, kb, 8, 8, 4).permute(0, 1, 3, 2, 4).reshape(g, kb, 256)
    wsum = q.sum(-1, dtype=torch.int32).to(torch.int16).contiguous()  # [G, KB, 8]
    d = s8.reshape(g, 8, kb).permute(0, 2, 1).contiguous()
    parts = [body.contiguous().view(torch.uint8), d.view(torch.uint8), wsum.view(torch.uint8)]
    return torch.cat(parts, dim=-1).contiguous()


def q8_exact(weight: torch.Tensor, w8: torch.Tensor, s8: torch.Tensor) -> bool:
    """The int8 blocks reproduce `weight` to float rounding (it was Q8_0 in the file)."""
    n, k = weight.shape
    back = w8.float().reshape(n, k // Q8_BLOCK, Q8_BLOCK) * s8.float()[..., None]
    err = (back.reshape(n, k) - weight.float()).abs()
    return bool((err <= 1e-3 * s8.float().repeat_interleave(Q8_BLOCK, dim=1) + 1e-7).all())


def quantize_q4_blocks(
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Q4_1 blocks (packed nibbles [N, K/2], fp16 scales and mins [N, K/32]) if they hold
    `weight` exactly (to float rounding), else None: only weights that were 4-bit already, in
    blocks that span their 16 levels (as Q4_1's min/max quantization makes them), qualify."""
    n, k = weight.shape
    blocks = weight.float().reshape(n, k // Q8_BLOCK, Q8_BLOCK)
    lo, hi = blocks.amin(dim=-1), blocks.amax(dim=-1)
    d = (hi - lo) / 15.0
    q = torch.round((blocks - lo[..., None]) / d.clamp(min=1e-12)[..., None]).clamp_(0, 15)
    error = (q * d[..., None] + lo[..., None] - blocks).abs()
    if bool((error > 1e-3 * d[..., None] + 1e-7).any()) or not fp16_exact(d) or not fp16_exact(lo):
        return None
    q8 = q.to(torch.uint8)
    packed = q8[..., :16] | (q8[..., 16:] << 4)
    return packed.reshape(n, k // 2).contiguous(), d.half().contiguous(), lo.half().contiguous()


class Linear:
    """y = x @ W^T + b, with the int8/4-bit copies described above.

    4-bit records serve every step size (the interleaved kernel beats the fp32 GEMM even at
    512 rows, measured in docs/benchmarks.md), so a layer that has them drops its float copy.
    Other weights get int8 blocks (interleaved 8 rows at a time when N % 8 == 0): weights
    that were int8 already (a Q8_0 tensor) use them at every step size and drop the float
    copy too; others use them up to `int8_max_rows` rows and keep the float weight for larger
    steps, so long prefills stay exact.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        int8_max_rows: int = 0,
        act_bits: int = 16,
    ) -> None:
        self.weight: torch.Tensor | None = weight
        self.act_bits = act_bits
        self.bias = bias
        self.int8_max_rows = int8_max_rows
        self.w8: torch.Tensor | None = None
        self.s8: torch.Tensor | None = None
        self.block_q8 = False
        self.q4: torch.Tensor | None = None  # q4x8 records
        self.q8x8: torch.Tensor | None = None  # q8x8 records
        self.q8x8_all_rows = False  # exact int8 weights: every step size takes q8x8
        if int8_max_rows <= 0:
            return
        if weight.dtype == torch.float32:
            if weight.shape[1] % Q8_BLOCK == 0 and q8_kernel_available():
                packed = quantize_q4_blocks(weight) if weight.shape[0] % 8 == 0 else None
                self.q4 = interleave_q4x8(packed) if packed is not None else None
                if self.q4 is not None:
                    self.weight = None  # every step size takes the 4-bit path
                q8 = quantize_q8_blocks(weight) if self.q4 is None else None
                if q8 is not None and weight.shape[0] % 8 == 0:
                    # interleaved records; weights that were int8 already need no float copy
                    self.q8x8 = interleave_q8x8(*q8)
                    self.q8x8_all_rows = q8_exact(weight, *q8)
                    if self.q8x8_all_rows:
                        self.weight = None
                elif q8 is not None:
                    self.w8, self.s8 = q8
                    self.block_q8 = True
            return
        w = weight.float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.w8 = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
        self.s8 = scale.to(weight.dtype).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.q4 is not None:
            return torch.ops.slipstream_cpu_linear.q4x8_linear(x, self.q4, self.bias, self.act_bits)
        if self.q8x8 is not None and (self.q8x8_all_rows or x.shape[0] <= self.int8_max_rows):
            return torch.ops.slipstream_cpu_linear.q8x8_linear(
                x, self.q8x8, self.bias, self.act_bits
            )
        if self.w8 is not None and x.shape[0] <= self.int8_max_rows:
            if self.block_q8:
                return torch.ops.slipstream_cpu_linear.q8_linear(
                    x, self.w8, self.s8, self.bias, self.act_bits
                )
            y = torch.ops.aten._weight_int8pack_mm(x, self.w8, self.s8)
            return y if self.bias is None else y + self.bias
        assert self.weight is not None
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
