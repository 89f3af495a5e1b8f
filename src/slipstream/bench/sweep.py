"""Runs at several loads: ``--sweep`` over rates or concurrencies, and ``--find-max``.

``--find-max`` searches the highest request rate whose *goodput* stays at or above a target,
with DistServe's definition: the fraction of requests that meet every per-request SLO
(failed requests miss) must be ≥ ``target`` (e.g. 0.9). The search doubles the rate until
a step misses, then bisects between the last passing and the first failing rate until they
are within ``tolerance`` of each other. Every step is a full run, kept and shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slipstream.bench.plan import RunPlan
from slipstream.bench.result import build_result
from slipstream.bench.runner import RunOutcome

SWEEP_SCHEMA = "slipstream.bench.sweep/v1"
SWEEP_KINDS = ("rate", "concurrency")

Runner = Callable[[RunPlan], RunOutcome]


@dataclass
class SweepStep:
    kind: str  # "rate" or "concurrency"
    value: float
    result: dict[str, Any]
    goodput: float | None  # joint SLO attainment (fraction of all requests), None without SLOs
    passed: bool | None  # goodput >= target (find-max only)

    def row(self) -> dict[str, Any]:
        s = self.result["summary"]
        return {
            self.kind: self.value,
            "requests_per_s": s["throughput"]["requests_per_s"],
            "output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
            "ttft_p50_ms": s["ttft_ms"]["p50"],
            "ttft_p99_ms": s["ttft_ms"]["p99"],
            "tpot_p50_ms": s["tpot_ms"]["p50"],
            "tpot_p99_ms": s["tpot_ms"]["p99"],
            "e2e_p99_ms": s["e2e_ms"]["p99"],
            "failed": s["requests"]["failed"],
            "goodput": self.goodput,
            "passed": self.passed,
        }


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """``rate=1,2,4`` or ``concurrency=1,8,32`` (``:`` works as well as ``=``)."""
    kind, sep, values = text.replace(":", "=", 1).partition("=")
    kind = kind.strip()
    if not sep or kind not in SWEEP_KINDS:
        raise ValueError(f"bad --sweep {text!r}: expected rate=R1,R2,... or concurrency=N1,N2,...")
    try:
        nums = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bad --sweep {text!r}: values must be numbers") from None
    if not nums or any(not v > 0 for v in nums):
        raise ValueError(f"bad --sweep {text!r}: give one or more values > 0")
    if kind == "concurrency" and any(v != int(v) for v in nums):
        raise ValueError(f"bad --sweep {text!r}: concurrencies must be whole numbers")
    return kind, sorted(nums)


def with_load(plan: RunPlan, kind: str, value: float) -> RunPlan:
    """The same plan at another load (a rate keeps the plan's arrival pattern)."""
    if kind == "rate":
        return replace(plan, schedule=replace(plan.schedule, rate=value))
    return replace(plan, schedule=replace(plan.schedule, rate=None, concurrency=int(value)))


def _step(
    plan: RunPlan,
    kind: str,
    value: float,
    run: Runner,
    bounds: dict[str, float],
    target: float | None,
    on_step: Callable[[SweepStep, RunOutcome], None] | None,
) -> SweepStep:
    outcome = run(with_load(plan, kind, value))
    result = build_result(outcome, None, bounds)
    att = result["summary"]["goodput"]["attainment"]
    goodput = att.get("all") if att else None
    passed = None if target is None or goodput is None else goodput >= target
    step = SweepStep(kind, value, result, goodput, passed)
    if on_step is not None:
        on_step(step, outcome)
    return step


def run_sweep(
    plan: RunPlan,
    kind: str,
    values: list[float],
    run: Runner,
    bounds: dict[str, float] | None = None,
    on_step: Callable[[SweepStep, RunOutcome], None] | None = None,
) -> list[SweepStep]:
    """One full run per value, lowest load first."""
    return [_step(plan, kind, v, run, bounds or {}, None, on_step) for v in values]


@dataclass
class FindMax:
    best: float | None  # highest passing rate found (None: even the start rate missed)
    target: float
    steps: list[SweepStep]


def find_max(
    plan: RunPlan,
    bounds: dict[str, float],
    run: Runner,
    *,
    target: float = 0.9,
    start: float = 1.0,
    max_rate: float = 10_000.0,
    tolerance: float = 0.1,
    max_steps: int = 12,
    on_step: Callable[[SweepStep, RunOutcome], None] | None = None,
) -> FindMax:
    """Highest rate with goodput ≥ ``target``: double from ``start``, then bisect."""
    if not bounds:
        raise ValueError("--find-max needs per-request SLOs: give --goodput or --slo bounds")
    if not 0 < target <= 1:
        raise ValueError(f"--goodput-target must be in (0, 1], got {target:g}")
    if not start > 0:
        raise ValueError(f"--find-max start rate must be > 0, got {start:g}")
    steps: list[SweepStep] = []

    def probe(rate: float) -> bool:
        step = _step(plan, "rate", rate, run, bounds, target, on_step)
        steps.append(step)
        return bool(step.passed)

    lo: float | None = None
    hi: float | None = None
    rate = start
    while len(steps) < max_steps:
        if probe(rate):
            lo = rate
            if rate >= max_rate:
                break
            rate = min(rate * 2, max_rate)
        else:
            hi = rate
            break
    if lo is None or hi is None:
        return FindMax(lo, target, steps)
    while len(steps) < max_steps and (hi - lo) > tolerance * hi:
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return FindMax(lo, target, steps)


def sweep_document(
    kind: str, steps: list[SweepStep], found: FindMax | None = None
) -> dict[str, Any]:
    """The sweep results file: a table of steps plus every step's full result."""
    doc: dict[str, Any] = {
        "schema": SWEEP_SCHEMA,
        "kind": kind,
        "table": [s.row() for s in steps],
        "steps": [s.result for s in steps],
    }
    if found is not None:
        doc["find_max"] = {"best_rate": found.best, "goodput_target": found.target}
    return doc
