"""The results document (versioned schema) and the client's self-check.

Schema ``slipstream.bench.result/v1``: ``schema``, ``config``, ``summary`` (see metrics.py),
``client`` (dispatch and event-loop lag, workers, whether the client was the limit),
``slo`` (gate checks), ``views`` (other tools' definitions, when asked), ``records_path``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from slipstream.bench import SCHEMA_VERSION
from slipstream.bench.metrics import MS, summarize_run
from slipstream.bench.runner import RunOutcome
from slipstream.bench.slo import SloCheck, evaluate, goodput_bounds
from slipstream.bench.stats import summarize
from slipstream.bench.views import view

DISPATCH_LAG_LIMIT_MS = 5.0  # open loop: sends later than this at p99 mean the client lagged
LOOP_LAG_LIMIT_MS = 1.0  # a ready read waiting longer than this at p99 blurs chunk stamps


def client_check(outcome: RunOutcome) -> dict[str, Any]:
    lag = [r.sent - r.scheduled for r in outcome.records]
    dispatch = summarize(lag, MS)
    loop = summarize(outcome.loop_lag, MS)
    warnings = []
    if outcome.plan.schedule.open_loop and (dispatch["p99"] or 0) > DISPATCH_LAG_LIMIT_MS:
        warnings.append(
            f"client dispatch lag p99 {dispatch['p99']:.1f} ms > {DISPATCH_LAG_LIMIT_MS} ms: "
            "the client could not send on schedule (add --workers, or the client is the limit)"
        )
    if (loop["p99"] or 0) > LOOP_LAG_LIMIT_MS:
        warnings.append(
            f"client event-loop lag p99 {loop['p99']:.2f} ms > {LOOP_LAG_LIMIT_MS} ms: "
            "chunk timestamps may be late by that much (add --workers or lower the load)"
        )
    return {
        "dispatch_lag_ms": dispatch,
        "loop_lag_ms": loop,
        "workers": outcome.workers,
        "connections_opened": outcome.connections,
        "limited": bool(warnings),
        "warnings": warnings,
    }


def _config(outcome: RunOutcome) -> dict[str, Any]:
    plan = outcome.plan
    wl = plan.workload
    return {
        "url": plan.url,
        "model": wl.model,
        "endpoint": wl.endpoint,
        "input_tokens": wl.input.describe(),
        "output_tokens": wl.output.describe(),
        "shared_prefix": asdict(wl.shared_prefix) if wl.shared_prefix else None,
        "dataset": wl.dataset,
        "tokenizer": wl.tokenizer,
        "ignore_eos": wl.ignore_eos,
        "seed": wl.seed,
        "schedule": asdict(plan.schedule),
        "requests": plan.requests,
        "duration_s": plan.duration,
        "timeout_s": plan.timeout,
        "started_at": outcome.started_at,
        "labels": plan.labels,
    }


def build_result(
    outcome: RunOutcome,
    slos: list[SloCheck] | None = None,
    goodput_ms: dict[str, float] | None = None,
    views: tuple[str, ...] = (),
    records_path: str | None = None,
) -> dict[str, Any]:
    slos = slos or []
    bounds = goodput_ms if goodput_ms else goodput_bounds(slos)
    summary = summarize_run(outcome.records, bounds)
    endpoint = outcome.plan.workload.endpoint
    return {
        "schema": SCHEMA_VERSION,
        "config": _config(outcome),
        "summary": summary,
        "client": client_check(outcome),
        "slo": evaluate(slos, summary),
        "views": {name: view(name, outcome.records, endpoint) for name in views},
        "records_path": records_path,
    }


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    Path(path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def read_result(path: str | Path) -> dict[str, Any]:
    data = orjson.loads(Path(path).read_bytes())
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(
        "slipstream.bench.result/"
    ):
        raise ValueError(f"{path}: not a slipstream bench result (missing 'schema')")
    return data
