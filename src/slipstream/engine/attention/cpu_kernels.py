"""Build-on-first-use C++ kernels for CPU attention (torch.utils.cpp_extension + ninja).

Compiled once per machine into torch's extension cache (~30 s the first time), then loaded in
milliseconds. If the compiler is missing or the build fails, the engine logs why and falls
back to the plain torch reference backend; SLIPSTREAM_CPU_KERNELS=0 turns the kernels off.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "paged_decode.cpp"


@functools.cache
def load_cpu_kernels() -> bool:
    """True when torch.ops.slipstream_cpu.paged_decode is available."""
    if os.environ.get("SLIPSTREAM_CPU_KERNELS", "1") == "0":
        return False
    try:
        from torch.utils.cpp_extension import load

        load(
            name="slipstream_cpu_attention",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp", "-fno-math-errno"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    except Exception as exc:  # a missing compiler or ninja must not stop the engine
        log.warning("CPU attention kernel unavailable (%s); using the torch reference", exc)
        return False
    return hasattr(torch.ops.slipstream_cpu, "paged_decode")
