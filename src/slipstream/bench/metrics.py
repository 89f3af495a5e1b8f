"""Slipstream's own metric definitions, computed from raw records after the run.

Per request (times from the request's *scheduled* moment, so queueing is never hidden):
  TTFT = first output-text event − scheduled
  E2E  = last output-text event − scheduled
  TPOT = (E2E − TTFT) / (output tokens − 1)
  ITL per chunk = gap between consecutive output-text events (pooled over requests)
  ITL per token = each chunk gap ÷ tokens in that chunk, one sample per token (pooled)
  max stall = the largest chunk gap of the request
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from slipstream.bench.record import RequestRecord
from slipstream.bench.stats import summarize

MS = 1000.0


@dataclass
class RequestMetrics:
    index: int
    ttft: float
    e2e: float
    ttft_from_send: float
    dispatch_lag: float
    output_tokens: int
    tpot: float | None
    chunk_gaps: list[float] = field(default_factory=list)
    token_gaps: list[float] = field(default_factory=list)
    max_stall: float = 0.0


def request_metrics(r: RequestRecord) -> RequestMetrics | None:
    """None for failed requests (they count in errors and against goodput, not in latencies)."""
    content = r.content_events
    if not r.ok or not content:
        return None
    first, last = content[0].t, content[-1].t
    n = r.output_tokens
    gaps = [b.t - a.t for a, b in itertools.pairwise(content)]
    token_gaps: list[float] = []
    for gap, ev in zip(gaps, content[1:], strict=True):
        if ev.tokens > 0:
            token_gaps.extend([gap / ev.tokens] * ev.tokens)
    return RequestMetrics(
        index=r.index,
        ttft=first - r.scheduled,
        e2e=last - r.scheduled,
        ttft_from_send=first - r.sent,
        dispatch_lag=r.sent - r.scheduled,
        output_tokens=n,
        tpot=(last - first) / (n - 1) if n > 1 else None,
        chunk_gaps=gaps,
        token_gaps=token_gaps,
        max_stall=max(gaps, default=0.0),
    )


def run_window(records: list[RequestRecord]) -> float:
    """Benchmark duration: first scheduled time to the last response end."""
    if not records:
        return 0.0
    start = min(r.scheduled for r in records)
    end = max((r.done_at or (r.events[-1].t if r.events else r.sent)) for r in records)
    return max(end - start, 1e-9)


def goodput(
    per: list[RequestMetrics], total: int, duration: float, slo_ms: dict[str, float]
) -> dict[str, Any]:
    """SLO attainment per metric and jointly (failed requests miss every SLO), and req/s met.

    ``slo_ms`` keys: ``ttft``, ``tpot``, ``e2e``, ``itl`` (max per-token gap), ``max_stall``.
    A request with one output token has no TPOT and passes the TPOT SLO (as vLLM counts it).
    """
    if not slo_ms:
        return {"slo_ms": {}, "attainment": {}, "requests_per_s": None}

    def value(m: RequestMetrics, key: str) -> float | None:
        if key == "itl":
            return max(m.token_gaps, default=None)
        return getattr(m, key)

    passed: Counter[str] = Counter()
    joint = 0
    for m in per:
        ok_all = True
        for key, limit in slo_ms.items():
            v = value(m, key)
            ok = v is None or v * MS <= limit
            passed[key] += ok
            ok_all &= ok
        joint += ok_all
    denom = max(total, 1)
    attainment = {k: passed[k] / denom for k in slo_ms}
    attainment["all"] = joint / denom
    return {"slo_ms": dict(slo_ms), "attainment": attainment, "requests_per_s": joint / duration}


def summarize_run(records: list[RequestRecord], slo_ms: dict[str, float]) -> dict[str, Any]:
    """The ``summary`` block of the results JSON."""
    per = [m for r in records if (m := request_metrics(r)) is not None]
    failed = [r for r in records if r.error_class is not None or request_metrics(r) is None]
    duration = run_window(records)
    out_tokens = sum(m.output_tokens for m in per)
    ok_records = [r for r in records if r.ok]
    in_tokens = sum(
        (r.usage or {}).get("prompt_tokens", r.input_tokens) or r.input_tokens for r in ok_records
    )
    errors = Counter(r.error_class or "unknown" for r in failed)
    examples = {}
    for r in failed:
        examples.setdefault(r.error_class or "unknown", r.error)
    return {
        "duration_s": duration,
        "requests": {
            "total": len(records),
            "completed": len(per),
            "failed": len(failed),
            "errors_by_class": dict(errors),
            "error_examples": examples,
        },
        "throughput": {
            "requests_per_s": len(per) / duration if records else 0.0,
            "output_tokens_per_s": out_tokens / duration if records else 0.0,
            "input_tokens_per_s": in_tokens / duration if records else 0.0,
            "total_tokens_per_s": (in_tokens + out_tokens) / duration if records else 0.0,
        },
        "ttft_ms": summarize([m.ttft for m in per], MS),
        "tpot_ms": summarize([m.tpot for m in per if m.tpot is not None], MS),
        "itl_ms": summarize([g for m in per for g in m.token_gaps], MS),
        "itl_chunk_ms": summarize([g for m in per for g in m.chunk_gaps], MS),
        "e2e_ms": summarize([m.e2e for m in per], MS),
        "max_stall_ms": summarize([m.max_stall for m in per], MS),
        "ttft_from_send_ms": summarize([m.ttft_from_send for m in per], MS),
        "tokens": token_report(ok_records, out_tokens, in_tokens),
        "goodput": goodput(per, len(records), duration, slo_ms),
    }


def token_report(records: list[RequestRecord], out_tokens: int, in_tokens: int) -> dict[str, Any]:
    """Where token counts came from, and where sources disagree."""
    sources = Counter(r.token_source for r in records)
    tokenizer_mismatch = [
        r.index
        for r in records
        if r.client_output_tokens is not None
        and r.usage is not None
        and abs(r.client_output_tokens - int(r.usage.get("completion_tokens", 0)))
        > max(1, 0.02 * r.client_output_tokens)
    ]
    short = [r.index for r in records if r.max_tokens and r.output_tokens < r.max_tokens]
    return {
        "output_total": out_tokens,
        "input_total": in_tokens,
        "sources": dict(sources),
        "usage_vs_tokenizer_mismatches": len(tokenizer_mismatch),
        "mismatch_examples": tokenizer_mismatch[:10],
        "short_outputs": len(short),
    }
