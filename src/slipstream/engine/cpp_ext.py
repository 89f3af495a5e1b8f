"""Build-on-first-use C++ CPU kernels (torch.utils.cpp_extension + ninja).

Each kernel is compiled once per machine into torch's extension cache (~30 s the first time),
then loaded in milliseconds. It is compiled with `-march=native`, so the cache entry's name
carries a digest of the CPU's model and feature flags: a cache shared between machines (a home
directory on NFS, a container image) never loads code built for instructions this CPU lacks.
If the compiler is missing or the build fails, the caller logs why and falls back to torch;
SLIPSTREAM_CPU_KERNELS=0 turns every kernel off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

# headers shared by every kernel (simd_math.h)
SHARED_CSRC = Path(__file__).parent / "csrc"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno"]


@functools.cache
def cpu_fingerprint() -> str:
    """A short digest of what -march=native depends on: CPU model name and feature flags."""
    text = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features")):
                text += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def sources_digest(sources: list[Path]) -> str:
    """torch rebuilds when a source changes but not when a header beside it does: name the
    build after every file in the sources' folders too."""
    h = hashlib.sha256()
    for folder in sorted({s.parent for s in sources} | {SHARED_CSRC}):
        for f in sorted(folder.iterdir()):
            if f.suffix in (".cpp", ".h"):
                h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:8]


def build_cpu_extension(name: str, sources: list[Path]) -> bool:
    """Compile and load `sources` (they register torch ops); False, with a warning, on failure."""
    if os.environ.get("SLIPSTREAM_CPU_KERNELS", "1") == "0":
        return False
    try:
        from torch.utils.cpp_extension import load

        load(
            name=f"{name}_{cpu_fingerprint()}_{sources_digest(sources)}",
            sources=[str(s) for s in sources],
            extra_cflags=CFLAGS,
            extra_include_paths=[str(SHARED_CSRC)],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    except Exception as exc:  # a missing compiler or ninja must not stop the engine
        log.warning("CPU kernel %s unavailable (%s); using torch instead", name, exc)
        return False
    return True
