"""Timestamp-error statistics and the sustained-rate verdict."""

from __future__ import annotations

from typing import Any

LOOSE_MS = 5.0  # a second, looser bound: how far each client gets when 1 ms is out of reach


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def error_stats(errors_s: list[float]) -> dict[str, Any]:
    ms = [e * 1000 for e in errors_s]
    return {
        "count": len(ms),
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else None,
        "min_ms": min(ms) if ms else None,
    }


def judge(
    rate: float,
    sent: list[float],
    completed: int,
    total: int,
    stamp_err: list[float],
    limit_ms: float,
) -> dict[str, Any]:
    """A rate is sustained when all completed, sends kept up, and stamps were < limit at p99."""
    sent = sorted(sent)
    achieved = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 and sent[-1] > sent[0] else 0
    err = error_stats(stamp_err)
    kept_up = completed == total and total > 0 and achieved >= 0.95 * rate
    p99 = err["p99_ms"] if err["p99_ms"] is not None else float("inf")
    return {
        "rate": rate,
        "requests": total,
        "completed": completed,
        "achieved_send_rate": achieved,
        "stamp_error": err,
        "sustained": kept_up and p99 < limit_ms,
        "sustained_loose": kept_up and p99 < LOOSE_MS,
    }


def itl_errors(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """``pairs``: (measured mean ITL, true mean ITL) per request, seconds."""
    errs = [abs(m - t) for m, t in pairs]
    out = error_stats(errs)
    out["mean_ms"] = sum(errs) / len(errs) * 1000 if errs else None
    return out


# --------------------------------------------------------------------------- slipstream bench
