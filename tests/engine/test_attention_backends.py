"""The C++ paged decode kernel agrees with the plain torch reference (gather + SDPA)."""

from __future__ import annotations

import pytest
import torch

from slipstream.engine.attention.cpu_kernels import load_cpu_kernels
from slipstream.engine.attention.metadata import build_metadata
from slipstream.engine.attention.torch_paged import TorchPagedAttention

pytestmark = pytest.mark.skipif(not load_cpu_kernels(), reason="CPU kernel did not build")


@pytest.mark.parametrize(
    ("dtype", "cache_dtype"),
    [
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.bfloat16),
        (torch.float32, torch.float16),  # the CPU fast path's float16 cache
    ],
)
# group sizes 1-4 with head dim 64/128 take the register-blocked path; 8 and dim 40 the
# generic loops
# group sizes 1-4 with head dim 64/128 take the register-blocked path; 8 and dim 40 the
# generic loops
@pytest.mark.parametrize(
    ("heads", "kv_heads", "d"), [(9, 3, 64), (4, 4, 64), (16, 4, 128), (8, 1, 128), (2, 1, 40)]
)
def test_kernel_matches_reference(
    dtype: torch.dtype, cache_dtype: torch.dtype, heads: int, kv_heads: int, d: int
) -> None:
    torch.manual_seed(0)
    block_size, num_blocks = 16, 64
    k_cache = torch.randn(num_blocks, block_size, kv_heads, d, dtype=cache_dtype)
    v_cache = torch.randn(num_blocks, block_size, kv_heads, d, dtype=cache_dtype)
    perm = torch.randperm(num_blocks).tolist()
    lens = [1, 17, 160, 33, 200]
    decode, used = [], 0
    for n in lens:
        nb = (n + block_size - 1) // block_size
        decode.append((perm[used : used + nb], n - 1))
        used += nb
    meta = build_metadata(decode, [], block_size, torch.device("cpu"))
    q = torch.randn(len(lens), heads, d, dtype=dtype)
    ref = TorchPagedAttention(heads, kv_heads, d).decode_reference(q, k_cache, v_cache, meta)
    got = TorchPagedAttention(heads, kv_heads, d, use_cpu_kernel=True).decode(
        q, k_cache, v_cache, meta
    )
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), ref.float(), atol=tol, rtol=tol)


def test_kernel_rejects_a_cache_dtype_it_cannot_read() -> None:
    meta = build_metadata([([0], 3)], [], 16, torch.device("cpu"))
    q = torch.randn(1, 2, 64, dtype=torch.bfloat16)
    cache = torch.randn(1, 16, 1, 64, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="float16 under float32 q"):
        TorchPagedAttention(2, 1, 64, use_cpu_kernel=True).decode(q, cache, cache, meta)
