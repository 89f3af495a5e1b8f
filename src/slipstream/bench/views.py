"""The same records under other tools' published metric definitions (``--report-as``).

Every view measures from the moment the request was *sent* (as those tools do), not from its
scheduled time, and uses that tool's anchors, names, units and aggregation:

vllm       TTFT = first event with ``choices`` (a role-only delta counts) − send;
           E2EL = last data event (chat) / last ``choices`` event (completions) − send;
           TPOT = (E2EL − TTFT)/(N − 1) per request; ITL = every gap between ``choices``
           events, pooled; throughput = ΣN / run duration; ms; mean/median/std/p99.
guidellm   TTFT = first output text − send; TPOT = (last token − send)/N (includes TTFT);
           ITL = (last token − first token)/(N − 1) per request; latency = stream end − send.
genai-perf TTFT = first response (any event) − send; request latency = last response − send;
           ITL = (latency − TTFT)/(N − 1) per request; output tok/s/user = 1/ITL;
           throughput = ΣN / (last response − first send); avg/min/max/std/p99/p90/p75.
llmperf    TTFT = first non-empty content − send; inter_token_latency = (last content − send)/N
           (i.e. includes TTFT); end_to_end_latency = stream end − send; seconds;
           throughput = ΣN / (test end − test start).
N is the server's ``usage.completion_tokens`` where given (LLMPerf itself re-tokenizes with a
Llama tokenizer and GenAI-Perf with the model's; we keep one N so only the definitions differ).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from slipstream.bench.record import Event, RequestRecord
from slipstream.bench.stats import summarize

VIEWS = ("vllm", "guidellm", "genai-perf", "llmperf")


def _ok(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.ok and r.content_events]


def _choices(r: RequestRecord) -> list[Event]:
    return [e for e in r.events if e.kind in ("content", "empty")]


def _span(records: list[RequestRecord]) -> float:
    start = min(r.scheduled for r in records)
    end = max(r.done_at or r.events[-1].t for r in records)
    return max(end - start, 1e-9)


def _ms(values: list[float], pcts: tuple[float, ...]) -> dict[str, Any]:
    return summarize(values, 1000.0, pcts)


def vllm_view(records: list[RequestRecord], endpoint: str = "chat") -> dict[str, Any]:
    ok = _ok(records)
    pcts = (50.0, 99.0)
    ttft, tpot, itl, e2el = [], [], [], []
    for r in ok:
        ch = _choices(r)
        data = [e for e in r.events if e.kind != "done"]
        end = (data[-1] if endpoint == "chat" else ch[-1]).t
        t = ch[0].t - r.sent
        latency = end - r.sent
        n = r.output_tokens
        ttft.append(t)
        e2el.append(latency)
        if n > 1:
            tpot.append((latency - t) / (n - 1))
        itl.extend(b.t - a.t for a, b in itertools.pairwise(ch))
    duration = _span(records) if records else 0.0
    total = sum(r.output_tokens for r in ok)
    return {
        "successful_requests": len(ok),
        "benchmark_duration_s": duration,
        "request_throughput_req_s": len(ok) / duration if records else 0.0,
        "output_token_throughput_tok_s": total / duration if records else 0.0,
        "ttft_ms": _ms(ttft, pcts),
        "tpot_ms": _ms(tpot, pcts),
        "itl_ms": _ms(itl, pcts),
        "e2el_ms": _ms(e2el, pcts),
    }


def guidellm_view(records: list[RequestRecord], endpoint: str = "chat") -> dict[str, Any]:
    ok = _ok(records)
    pcts = (50.0, 90.0, 95.0, 99.0, 99.9)
    ttft, tpot, itl, latency = [], [], [], []
    for r in ok:
        c = r.content_events
        n = r.output_tokens
        ttft.append(c[0].t - r.sent)
        tpot.append((c[-1].t - r.sent) / n if n else 0.0)
        if n > 1:
            itl.append((c[-1].t - c[0].t) / (n - 1))
        latency.append((r.done_at or c[-1].t) - r.sent)
    duration = _span(records) if records else 0.0
    return {
        "requests_per_second": len(ok) / duration if records else 0.0,
        "output_tokens_per_second": sum(r.output_tokens for r in ok) / duration if records else 0.0,
        "time_to_first_token_ms": _ms(ttft, pcts),
        "time_per_output_token_ms": _ms(tpot, pcts),
        "inter_token_latency_ms": _ms(itl, pcts),
        "request_latency_s": summarize(latency, 1.0, pcts),
    }


def genai_perf_view(records: list[RequestRecord], endpoint: str = "chat") -> dict[str, Any]:
    ok = _ok(records)
    pcts = (75.0, 90.0, 99.0)
    ttft, itl, latency, per_user = [], [], [], []
    for r in ok:
        data = [e for e in r.events if e.kind != "done"]
        t = data[0].t - r.sent
        lat = data[-1].t - r.sent
        n = r.output_tokens
        ttft.append(t)
        latency.append(lat)
        if n > 1 and lat > t:
            itl.append((lat - t) / (n - 1))
            per_user.append((n - 1) / (lat - t))
    if ok:
        first_send = min(r.sent for r in ok)
        last_resp = max([e for e in r.events if e.kind != "done"][-1].t for r in ok)
        window = max(last_resp - first_send, 1e-9)
    else:
        window = 0.0
    total = sum(r.output_tokens for r in ok)
    return {
        "request_count": len(ok),
        "request_throughput_per_sec": len(ok) / window if window else 0.0,
        "output_token_throughput_per_sec": total / window if window else 0.0,
        "output_token_throughput_per_user": summarize(per_user, 1.0, pcts),
        "time_to_first_token_ms": _ms(ttft, pcts),
        "inter_token_latency_ms": _ms(itl, pcts),
        "request_latency_ms": _ms(latency, pcts),
    }


def llmperf_view(records: list[RequestRecord], endpoint: str = "chat") -> dict[str, Any]:
    ok = _ok(records)
    pcts = (25.0, 50.0, 75.0, 90.0, 95.0, 99.0)
    ttft, itl, e2e, per_req = [], [], [], []
    for r in ok:
        c = r.content_events
        n = r.output_tokens
        end = r.done_at or c[-1].t
        ttft.append(c[0].t - r.sent)
        itl.append((c[-1].t - r.sent) / n if n else 0.0)
        e2e.append(end - r.sent)
        per_req.append(n / (end - r.sent))
    duration = _span(records) if records else 0.0
    total = sum(r.output_tokens for r in ok)
    return {
        "num_completed_requests": len(ok),
        "num_completed_requests_per_min": 60 * len(ok) / duration if records else 0.0,
        "mean_output_throughput_token_per_s": total / duration if records else 0.0,
        "ttft_s": summarize(ttft, 1.0, pcts),
        "inter_token_latency_s": summarize(itl, 1.0, pcts),
        "end_to_end_latency_s": summarize(e2e, 1.0, pcts),
        "request_output_throughput_token_per_s": summarize(per_req, 1.0, pcts),
    }


VIEW_FUNCS: dict[str, Callable[[list[RequestRecord], str], dict[str, Any]]] = {
    "vllm": vllm_view,
    "guidellm": guidellm_view,
    "genai-perf": genai_perf_view,
    "llmperf": llmperf_view,
}


def view(name: str, records: list[RequestRecord], endpoint: str = "chat") -> dict[str, Any]:
    if name not in VIEW_FUNCS:
        raise ValueError(f"unknown --report-as {name!r}; expected one of {', '.join(VIEWS)}")
    return VIEW_FUNCS[name](records, endpoint)
