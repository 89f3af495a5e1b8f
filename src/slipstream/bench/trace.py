"""Replay of a recorded trace: arrival offsets plus input/output lengths, one JSON per line.

Accepted keys per line (the first present wins): arrival ``offset`` / ``arrival_s`` /
``timestamp`` (seconds; ``timestamp_ms`` or Mooncake's ``timestamp`` with
``--trace-time-unit ms``), input ``input_tokens`` / ``input_length`` / ``prompt_tokens``,
output ``output_tokens`` / ``output_length`` / ``max_tokens``. Offsets are made relative to
the first arrival and sorted, so absolute timestamps work too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

_TIME_KEYS = ("offset", "arrival_s", "timestamp", "timestamp_ms")
_IN_KEYS = ("input_tokens", "input_length", "prompt_tokens")
_OUT_KEYS = ("output_tokens", "output_length", "max_tokens")


@dataclass(frozen=True)
class TraceEntry:
    offset: float  # seconds from the first arrival
    input_tokens: int
    output_tokens: int


def _pick(row: dict[str, object], keys: tuple[str, ...], where: str) -> float:
    for k in keys:
        v = row.get(k)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    raise ValueError(f"{where}: needs one of {', '.join(keys)}")


def load_trace(path: str | Path, time_unit: str = "s") -> list[TraceEntry]:
    if time_unit not in ("s", "ms"):
        raise ValueError(f"bad --trace-time-unit {time_unit!r}: expected s or ms")
    rows: list[tuple[float, int, int]] = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"--trace {path} line {n}"
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ValueError(f"{where}: not JSON") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object")
            t = _pick(row, _TIME_KEYS, where)
            scale = 0.001 if time_unit == "ms" or "timestamp_ms" in row else 1.0
            i, o = int(_pick(row, _IN_KEYS, where)), int(_pick(row, _OUT_KEYS, where))
            if i < 1 or o < 1:
                raise ValueError(f"{where}: token lengths must be >= 1")
            rows.append((t * scale, i, o))
    if not rows:
        raise ValueError(f"--trace {path}: no entries")
    rows.sort()
    first = rows[0][0]
    return [TraceEntry(t - first, i, o) for t, i, o in rows]
