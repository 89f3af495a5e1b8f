"""A/B comparison of two runs with a significance test per metric.

Per-request samples come from each run's records (JSONL). The test is Mann–Whitney U
(two-sided, normal approximation with tie correction), which assumes no distribution shape
— latencies are skewed; scipy's implementation is used when installed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from slipstream.bench.metrics import MS, request_metrics
from slipstream.bench.record import read_jsonl
from slipstream.bench.result import read_result

METRICS = ("ttft", "tpot", "e2e", "max_stall")


def mann_whitney_u(a: list[float], b: list[float]) -> tuple[float, float]:
    """(U statistic of ``a``, two-sided p-value)."""
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        return _mann_whitney_pure(a, b)
    res = mannwhitneyu(a, b, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def _mann_whitney_pure(a: list[float], b: list[float]) -> tuple[float, float]:
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan")
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - n1 * n2 / 2) - 0.5) / math.sqrt(var)  # continuity correction
    return u1, math.erfc(max(z, 0.0) / math.sqrt(2))


def _samples(result_path: str | Path) -> dict[str, list[float]]:
    result = read_result(result_path)
    rec_path = result.get("records_path")
    if not rec_path:
        raise ValueError(f"{result_path}: has no records_path; cannot compare per-request samples")
    p = Path(rec_path)
    if not p.is_absolute() and not p.exists():
        p = Path(result_path).parent / p
    per = [m for r in read_jsonl(p) if (m := request_metrics(r)) is not None]
    out = {k: [getattr(m, k) * MS for m in per if getattr(m, k) is not None] for k in METRICS}
    return out


def compare_runs(a: str | Path, b: str | Path, alpha: float = 0.05) -> list[dict[str, Any]]:
    """One row per metric: medians, relative change of B vs A, p-value, significant?"""
    sa, sb = _samples(a), _samples(b)
    rows = []
    for k in METRICS:
        xa, xb = sa[k], sb[k]
        med_a = sorted(xa)[len(xa) // 2] if xa else float("nan")
        med_b = sorted(xb)[len(xb) // 2] if xb else float("nan")
        _, p = mann_whitney_u(xa, xb)
        change = (med_b - med_a) / med_a if med_a else float("nan")
        rows.append(
            {
                "metric": f"{k}_ms",
                "median_a": med_a,
                "median_b": med_b,
                "change": change,
                "p_value": p,
                "significant": bool(p < alpha),
            }
        )
    return rows
