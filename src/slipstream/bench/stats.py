"""Summary statistics with one percentile definition (linear interpolation, numpy's default)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def pct_key(p: float) -> str:
    return f"p{p:g}"


def summarize(
    values: Sequence[float], scale: float = 1.0, percentiles: Sequence[float] = PERCENTILES
) -> dict[str, float | int | None]:
    """count, mean, stddev (population), min, max and percentiles of ``values * scale``."""
    out: dict[str, float | int | None] = {"count": len(values)}
    if not len(values):
        out.update({k: None for k in ("mean", "stddev", "min", "max")})
        out.update({pct_key(p): None for p in percentiles})
        return out
    arr = np.asarray(values, dtype=np.float64) * scale
    out.update(
        mean=float(arr.mean()), stddev=float(arr.std()), min=float(arr.min()), max=float(arr.max())
    )
    for p, v in zip(percentiles, np.percentile(arr, list(percentiles)), strict=True):
        out[pct_key(p)] = float(v)
    return out
