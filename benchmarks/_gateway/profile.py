"""Optional py-spy sampling of a gateway while wrk loads it (`--py-spy`), summarised by function.

py-spy attaches to the running process (no restart, no code change) and writes collapsed
stacks; `summarize` turns them into the functions with the most samples, by own time and
including callees, which is usually enough to see where a request's CPU goes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from _gateway.targets import REPO


def py_spy_path() -> str | None:
    local = REPO / ".venv" / "bin" / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample `pid` at 200 Hz for `seconds` into `out` (collapsed stacks); None without py-spy."""
    exe = py_spy_path()
    if exe is None:
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
            "--rate", "400", "--format", "raw", "--nonblocking", "--output", str(out)]  # fmt: skip
    log = out.with_suffix(".log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def summarize(path: Path, top: int = 20) -> dict[str, list[tuple[str, float]]]:
    """The `top` functions by own samples and by inclusive samples, as % of all samples."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    if not total:
        return {"own": [], "inclusive": []}

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]

    # Frames on every stack (the entry point, the event loop) say nothing: leave them out.
    root = max(incl.values())
    incl = Counter({f: n for f, n in incl.items() if n < root})

    return {"samples": [("total", float(total))], "own": pct(own), "inclusive": pct(incl)}
