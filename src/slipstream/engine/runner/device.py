"""Pick the device and compute dtype.

On CPU, "auto" means bfloat16 when the CPU has native bf16 dot products (AVX512-BF16 or AMX):
batched decode and prefill GEMMs then run ~2x faster than fp32 on the 2-core test machine,
and single-stream decode goes through the int8 weight-only path (layers/linear.py). Other CPUs
get float32. On CUDA "auto" means bfloat16. Parity tests pin float32.
"""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_dtype(name: str, device: torch.device, block_weights: bool = False) -> torch.dtype:
    """`block_weights`: the checkpoint is block-quantized and the CPU block kernels are built;
    then "auto" on CPU is float32 with those kernels (4-bit/int8 reads beat bf16's 16-bit
    ones at every batch size measured, docs/benchmarks.md) even where bf16 is fast."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        if block_weights:
            return torch.float32
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_kv_dtype(name: str, dtype: torch.dtype, fast_cpu_path: bool) -> torch.dtype:
    """The KV cache's element type: "auto" follows the compute dtype, except float16 on the
    CPU block-kernel path (llama.cpp's default cache type too): decode attention is bound by
    reading the cache, and fp16 keeps 11 significant bits of each key and value."""
    if name == "auto":
        return torch.float16 if fast_cpu_path else dtype
    if name not in DTYPES:
        raise ValueError(f"unknown kv_cache_dtype {name!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]
