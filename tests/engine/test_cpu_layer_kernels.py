"""The C++ layer kernels (block-int8 linear, fused RMSNorm/rotary/SiLU-mul) against torch.

The block-int8 kernel is checked two ways: exactly (to float rounding) against a plain-torch
model of the same arithmetic, so any indexing or scale bug shows; and loosely against the
float matmul, to bound what the quantization itself costs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from slipstream.engine.layers.cpu_ops import load_layer_kernels
from slipstream.engine.layers.linear import (
    Linear,
    interleave_q4x8,
    interleave_q8x8,
    quantize_q4_blocks,
    quantize_q8_blocks,
)
from slipstream.engine.layers.rotary import RotaryEmbedding

pytestmark = pytest.mark.skipif(not load_layer_kernels(), reason="CPU layer kernels did not build")


def reference_q8(x: torch.Tensor, wq: torch.Tensor, ws: torch.Tensor, bits: int) -> torch.Tensor:
    """The kernel's arithmetic in torch: x quantized per 32-block, integer block dots, scaled."""
    m, k = x.shape
    xb = x.reshape(m, k // 32, 32)
    xs = xb.abs().amax(-1) / (2 ** (bits - 1) - 1)
    xq = torch.round(xb * torch.where(xs > 0, 1.0 / xs, 0.0)[..., None]).to(torch.int64)
    wb = wq.reshape(wq.shape[0], k // 32, 32).to(torch.int64)
    dots = torch.einsum("mbi,nbi->mnb", xq, wb).double()  # exact integer block sums
    return (dots * xs.double()[:, None, :] * ws.double()[None, :, :]).sum(-1).float()


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 9, 33])
@pytest.mark.parametrize("n,k", [(8, 32), (37, 96), (130, 576)])
def test_q8_linear_matches_its_torch_model_and_the_float_matmul(
    m: int, n: int, k: int, bits: int
) -> None:
    g = torch.Generator().manual_seed(m * 1000 + n + k)
    w = torch.randn(n, k, generator=g) * 0.05
    x = torch.randn(m, k, generator=g)
    x[0, :32] = 0.0  # an all-zero block must not divide by zero
    bias = torch.randn(n, generator=g)
    q8 = quantize_q8_blocks(w)
    assert q8 is not None
    wq, ws = q8
    y = torch.ops.slipstream_cpu_linear.q8_linear(x, wq, ws, bias, bits)
    assert y.shape == (m, n) and y.dtype == torch.float32
    torch.testing.assert_close(y, reference_q8(x, wq, ws, bits) + bias, rtol=1e-4, atol=1e-4)
    # against the float matmul with the same (int8-rounded) weights, only the activations'
    # rounding is left: ~0.5% with int8, float-rounding level with int16
    wf = (wq.float().reshape(n, k // 32, 32) * ws.float()[..., None]).reshape(n, k)
    exact = F.linear(x, wf, bias)
    rel = ((y - exact).norm() / exact.norm()).item()
    assert rel < (0.02 if bits == 8 else 1e-4), f"activation rounding error {rel:.2e}"


def four_bit_weight(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """What a Q4_1 GGUF tensor dequantizes to: d * q + m, q in 0..15 spanning each block."""
    q = torch.randint(0, 16, (n, k // 32, 32), generator=g).float()
    q[..., 3], q[..., 20] = 0, 15
    d = (torch.rand(n, k // 32, 1, generator=g) * 0.01 + 1e-3).half().float()
    m = (-8 * d + torch.randn(n, k // 32, 1, generator=g) * 1e-3).half().float()
    return (q * d + m).reshape(n, k)


def reference_q4(
    x: torch.Tensor, w4: torch.Tensor, d: torch.Tensor, mins: torch.Tensor, bits: int
) -> torch.Tensor:
    """The 4-bit kernel's arithmetic in torch, including the block-min term."""
    m, k = x.shape
    xb = x.reshape(m, k // 32, 32)
    xs = xb.abs().amax(-1) / (2 ** (bits - 1) - 1)
    xq = torch.round(xb * torch.where(xs > 0, 1.0 / xs, 0.0)[..., None]).to(torch.int64)
    packed = w4.reshape(w4.shape[0], k // 32, 16).to(torch.int64)
    q = torch.cat([packed & 15, packed >> 4], dim=-1)
    dots = torch.einsum("mbi,nbi->mnb", xq, q).double()
    xsum = xs.double() * xq.sum(-1).double()
    scaled = dots * xs.double()[:, None, :] * d.double()[None]
    return (scaled + mins.double()[None] * xsum[:, None, :]).sum(-1).float()


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("m", [1, 2, 4, 7, 33])
@pytest.mark.parametrize("n,k", [(8, 32), (40, 96), (136, 576)])
def test_q4_linear_keeps_4bit_weights_exactly(m: int, n: int, k: int, bits: int) -> None:
    g = torch.Generator().manual_seed(7 * m + n + k)
    w = four_bit_weight(n, k, g)
    packed = quantize_q4_blocks(w)
    assert packed is not None
    w4, d, mins = packed
    # per block: the low nibbles hold elements 0..15, the high ones 16..31
    restored = (
        torch.cat(
            [(w4.reshape(n, k // 32, 16) & 15), (w4.reshape(n, k // 32, 16) >> 4)], dim=-1
        ).float()
        * d.float()[..., None]
        + mins.float()[..., None]
    )
    torch.testing.assert_close(restored.reshape(n, k), w, rtol=0, atol=1e-6)
    x = torch.randn(m, k, generator=g)
    bias = torch.randn(n, generator=g)
    records = interleave_q4x8(packed)
    assert records.shape == (n // 8, k // 32, 160)
    y = torch.ops.slipstream_cpu_linear.q4x8_linear(x, records, bias, bits)
    torch.testing.assert_close(y, reference_q4(x, w4, d, mins, bits) + bias, rtol=1e-4, atol=1e-4)
    exact = F.linear(x, w, bias)  # the weights are exact: only activation rounding is left
    rel = ((y - exact).norm() / exact.norm()).item()
    assert rel < (0.02 if bits == 8 else 1e-4), f"activation rounding error {rel:.2e}"


def test_only_weights_that_are_4bit_already_get_4bit_blocks() -> None:
    g = torch.Generator().manual_seed(3)
    assert quantize_q4_blocks(torch.randn(16, 64, generator=g)) is None
    four = four_bit_weight(16, 64, g)
    assert Linear(four, None, int8_max_rows=4).q4 is not None
    # 4-bit weights whose row count is not a multiple of 8 take int8 blocks instead
    assert Linear(four[:12], None, int8_max_rows=4).block_q8
    dense = Linear(torch.randn(16, 64, generator=g), None, int8_max_rows=4)
    assert dense.q4 is None and dense.q8x8 is not None


def test_q8_linear_rejects_shapes_it_cannot_compute() -> None:
    q8 = quantize_q8_blocks(torch.randn(8, 64))
    assert q8 is not None
    wq, ws = q8
    with pytest.raises(RuntimeError, match="shape mismatch"):
        torch.ops.slipstream_cpu_linear.q8_linear(torch.randn(2, 32), wq, ws, None, 16)
    with pytest.raises(RuntimeError, match="act_bits must be 8 or 16"):
        torch.ops.slipstream_cpu_linear.q8_linear(torch.randn(2, 64), wq, ws, None, 12)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("m", [1, 3, 8, 9, 33])
@pytest.mark.parametrize("n,k", [(8, 32), (40, 96), (136, 576)])
def test_q8x8_linear_matches_the_int8_block_arithmetic(m: int, n: int, k: int, bits: int) -> None:
    g = torch.Generator().manual_seed(11 * m + n + k)
    w = torch.randn(n, k, generator=g) * 0.05
    w[1, :32] = -w[1, :32].abs()  # an all-negative block: the VNNI path's offset correction
    x = torch.randn(m, k, generator=g)
    x[-1, 32:] = 0.0
    bias = torch.randn(n, generator=g)
    q8 = quantize_q8_blocks(w)
    assert q8 is not None
    records = interleave_q8x8(*q8)
    assert records.shape == (n // 8, k // 32, 288) and records.dtype == torch.uint8
    y = torch.ops.slipstream_cpu_linear.q8x8_linear(x, records, bias, bits)
    torch.testing.assert_close(y, reference_q8(x, *q8, bits) + bias, rtol=1e-4, atol=1e-4)
    row_kernel = torch.ops.slipstream_cpu_linear.q8_linear(x, *q8, bias, bits)
    torch.testing.assert_close(y, row_kernel, rtol=1e-5, atol=1e-5)


def test_q8x8_linear_rejects_shapes_it_cannot_compute() -> None:
    q8 = quantize_q8_blocks(torch.randn(8, 64))
    assert q8 is not None
    records = interleave_q8x8(*q8)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        torch.ops.slipstream_cpu_linear.q8x8_linear(torch.randn(2, 32), records, None, 16)
    with pytest.raises(RuntimeError, match="act_bits must be 8 or 16"):
        torch.ops.slipstream_cpu_linear.q8x8_linear(torch.randn(2, 64), records, None, 4)


def test_weights_that_were_int8_take_int8_blocks_at_every_step_size() -> None:
    g = torch.Generator().manual_seed(5)
    q = torch.randint(-127, 128, (16, 64), generator=g).float()
    q[:, ::32] = 127  # every block reaches its scale, as Q8_0's quantizer makes it
    d = (torch.rand(16, 2, generator=g) * 0.01 + 1e-3).half().float()
    w = (q.reshape(16, 2, 32) * d[..., None]).reshape(16, 64)
    layer = Linear(w, None, int8_max_rows=4)
    assert layer.q8x8_all_rows and layer.weight is None  # no float copy kept
    big = torch.randn(40, 64, generator=g)
    exact = F.linear(big, w)
    rel = ((layer(big) - exact).norm() / exact.norm()).item()
    assert rel < 1e-4, f"int16 activations on exact int8 weights: error {rel:.2e}"


def test_linear_uses_int8_blocks_only_up_to_its_row_limit() -> None:
    w = torch.randn(64, 128) * 0.05
    layer = Linear(w, None, int8_max_rows=4)
    assert layer.q8x8 is not None and not layer.q8x8_all_rows
    small, big = torch.randn(4, 128), torch.randn(5, 128)
    assert not torch.equal(layer(small), F.linear(small, w))  # quantized path
    assert torch.equal(layer(big), F.linear(big, w))  # dense path, bit-exact
    odd = Linear(torch.randn(16, 40), None, int8_max_rows=4)  # K not a multiple of 32
    assert not odd.block_q8 and odd.w8 is None and odd.q8x8 is None
    rows12 = Linear(torch.randn(12, 64), None, int8_max_rows=4)  # N not a multiple of 8
    assert rows12.block_q8 and rows12.q8x8 is None
    x = torch.randn(3, 64)
    assert rows12.weight is not None
    exact = F.linear(x, rows12.weight)
    assert ((rows12(x) - exact).norm() / exact.norm()).item() < 0.02  # int8 weight rounding


def reference_rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def test_fused_rms_norm_and_residual_add() -> None:
    fused = torch.ops.slipstream_cpu_fused
    x, d, w = torch.randn(7, 576), torch.randn(7, 576), torch.randn(576)
    torch.testing.assert_close(fused.rms_norm(x, w, 1e-5), reference_rms(x, w, 1e-5))
    residual = x.clone()
    out = fused.add_rms_norm_(residual, d, w, 1e-5)
    torch.testing.assert_close(residual, x + d)  # the residual stream is updated in place
    torch.testing.assert_close(out, reference_rms(x + d, w, 1e-5))


def test_fused_rope_rotates_q_and_k_in_place_and_leaves_v() -> None:
    heads, kv_heads, d, t = 9, 3, 64, 5
    rot = RotaryEmbedding(d, 256, 10000.0, None, torch.device("cpu"), torch.float32)
    positions = torch.tensor([0, 3, 17, 100, 255])
    qkv = torch.randn(t, (heads + 2 * kv_heads) * d)
    q = qkv[:, : heads * d].reshape(t, heads, d)
    k = qkv[:, heads * d : (heads + kv_heads) * d].reshape(t, kv_heads, d)
    cos, sin = rot.tables(positions)
    want_q, want_k = rot.apply(q, cos, sin), rot.apply(k, cos, sin)
    v_before = qkv[:, (heads + kv_heads) * d :].clone()
    torch.ops.slipstream_cpu_fused.rope_qk_(qkv, positions, rot.cos, rot.sin, heads, kv_heads, d)
    torch.testing.assert_close(qkv[:, : heads * d].reshape(t, heads, d), want_q)
    torch.testing.assert_close(
        qkv[:, heads * d : (heads + kv_heads) * d].reshape(t, kv_heads, d), want_k
    )
    assert torch.equal(qkv[:, (heads + kv_heads) * d :], v_before)
    with pytest.raises(RuntimeError, match="position"):
        torch.ops.slipstream_cpu_fused.rope_qk_(
            qkv, torch.tensor([0, 1, 2, 3, 256]), rot.cos, rot.sin, heads, kv_heads, d
        )


def test_fused_silu_mul() -> None:
    gu = torch.randn(6, 2 * 1536) * 4
    g, u = gu.split(1536, dim=-1)
    torch.testing.assert_close(torch.ops.slipstream_cpu_fused.silu_mul(gu), F.silu(g) * u)
