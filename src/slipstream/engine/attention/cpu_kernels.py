"""The C++ paged decode attention kernel for CPU (built on first use, see engine/cpp_ext.py).

If it cannot be built the engine uses the plain torch reference backend instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from slipstream.engine.cpp_ext import build_cpu_extension

SOURCE = Path(__file__).parent / "csrc" / "paged_decode.cpp"


@functools.cache
def load_cpu_kernels() -> bool:
    """True when torch.ops.slipstream_cpu.paged_decode is available."""
    if not build_cpu_extension("slipstream_cpu_attention", [SOURCE]):
        return False
    return hasattr(torch.ops.slipstream_cpu, "paged_decode")
