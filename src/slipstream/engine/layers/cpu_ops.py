"""The C++ layer kernels for CPU float32 steps (built on first use, see engine/cpp_ext.py).

`csrc/quant_linear.cpp` is the row-wise block-int8 linear layer, `csrc/q8x8_linear.cpp` and
`csrc/q4x8_linear.cpp` the interleaved 8-bit and 4-bit ones; `csrc/fused_ops.cpp` fuses RMSNorm
(with the residual add), rotary embedding and SiLU-mul into one op each. Both are used only where
the engine may trade exactness for speed (dtype "auto" on a CPU without fast bf16); a float32
asked for by name keeps the torch reference ops that match Hugging Face bit for bit.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from slipstream.engine.cpp_ext import build_cpu_extension

CSRC = Path(__file__).parent / "csrc"
SOURCES = [
    CSRC / "quant_linear.cpp",
    CSRC / "q4x8_linear.cpp",
    CSRC / "q8x8_linear.cpp",
    CSRC / "fused_ops.cpp",
]


@functools.cache
def load_layer_kernels() -> bool:
    """True when torch.ops.slipstream_cpu_linear and slipstream_cpu_fused are loaded."""
    if not build_cpu_extension("slipstream_cpu_layers", SOURCES):
        return False
    linear = torch.ops.slipstream_cpu_linear
    return (
        hasattr(linear, "q8_linear")
        and hasattr(linear, "q8x8_linear")
        and hasattr(torch.ops.slipstream_cpu_fused, "silu_mul")
    )
