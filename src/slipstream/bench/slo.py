"""SLO gates: ``ttft_p99_ms=800,tpot_p99_ms=25`` → pass/fail checks over the run's summary.

Latency keys are ``{metric}_{stat}_ms`` with metric in ttft, tpot, itl, e2e, max_stall and stat
in mean, p50, p90, p95, p99, p99.9; ``error_rate`` is failed/total. Every latency bound also
becomes a per-request goodput bound for its metric (ttft_p99_ms=800 → a request is "good" only
if its TTFT ≤ 800 ms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"^(ttft|tpot|itl|e2e|max_stall)_(mean|p50|p90|p95|p99|p99\.9)_ms$")


@dataclass(frozen=True)
class SloCheck:
    key: str
    limit: float

    def metric_stat(self) -> tuple[str, str] | None:
        m = _KEY.match(self.key)
        return (m.group(1), m.group(2)) if m else None

    def observed(self, summary: dict[str, Any]) -> float | None:
        if self.key == "error_rate":
            req = summary["requests"]
            return req["failed"] / req["total"] if req["total"] else 1.0
        metric, stat = self.metric_stat()  # type: ignore[misc]
        return summary[f"{metric}_ms"].get(stat)


def parse_slos(text: str | None) -> list[SloCheck]:
    if not text:
        return []
    checks = []
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"bad --slo entry {part!r}: expected KEY=VALUE")
        if key != "error_rate" and not _KEY.match(key):
            raise ValueError(
                f"bad --slo key {key!r}: use error_rate or METRIC_STAT_ms with METRIC in "
                "ttft,tpot,itl,e2e,max_stall and STAT in mean,p50,p90,p95,p99,p99.9"
            )
        try:
            limit = float(value)
        except ValueError:
            raise ValueError(f"bad --slo value in {part!r}: not a number") from None
        checks.append(SloCheck(key, limit))
    return checks


def goodput_bounds(checks: list[SloCheck]) -> dict[str, float]:
    """Per-request bounds (ms) for goodput: the tightest bound given per metric."""
    out: dict[str, float] = {}
    for c in checks:
        ms = c.metric_stat()
        if ms is not None:
            out[ms[0]] = min(out.get(ms[0], c.limit), c.limit)
    return out


def evaluate(checks: list[SloCheck], summary: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for c in checks:
        v = c.observed(summary)
        rows.append(
            {
                "key": c.key,
                "limit": c.limit,
                "observed": v,
                "passed": v is not None and v <= c.limit,
            }
        )
    return {"checks": rows, "passed": all(r["passed"] for r in rows)}
