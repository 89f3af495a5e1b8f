"""Each --report-as view reproduces that tool's published definitions (hand-built records).

One request: scheduled 0.90, sent 1.00, a role-only chunk at 1.05, text chunks at 1.10 (1
token), 1.12 (1), 1.16 (2), 1.20 (1), usage chunk at 1.21, [DONE] at 1.21, stream end 1.22.
"""

from __future__ import annotations

import pytest

from slipstream.bench.metrics import request_metrics, summarize_run
from slipstream.bench.record import Event, RequestRecord
from slipstream.bench.views import view

MS = 1000


def record(index: int = 0, shift: float = 0.0) -> RequestRecord:
    ev = [
        Event(1.05, "empty"),
        Event(1.10, "content", 1, "a"),
        Event(1.12, "content", 1, "b"),
        Event(1.16, "content", 2, "cd"),
        Event(1.20, "content", 1, "e"),
        Event(1.21, "usage"),
        Event(1.21, "done"),
    ]
    for e in ev:
        e.t += shift
    return RequestRecord(
        index=index,
        worker=0,
        scheduled=0.90 + shift,
        sent=1.00 + shift,
        headers_at=1.01 + shift,
        done_at=1.22 + shift,
        status=200,
        error_class=None,
        error=None,
        input_tokens=10,
        max_tokens=5,
        prefix_id=None,
        usage={"prompt_tokens": 10, "completion_tokens": 5},
        token_source="usage",
        events=ev,
    )


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-9)


def test_slipstream_definitions() -> None:
    m = request_metrics(record())
    assert m is not None
    assert m.ttft == approx(0.20)  # first text − *scheduled*
    assert m.e2e == approx(0.30)
    assert m.tpot == approx(0.10 / 4)
    assert m.chunk_gaps == [approx(0.02), approx(0.04), approx(0.04)]
    assert m.token_gaps == [approx(0.02), approx(0.02), approx(0.02), approx(0.04)]
    assert m.max_stall == approx(0.04) and m.dispatch_lag == approx(0.10)


def test_vllm_view() -> None:
    v = view("vllm", [record()], "chat")
    assert v["ttft_ms"]["mean"] == approx(50)  # the role-only chunk counts as first token
    assert v["e2el_ms"]["mean"] == approx(210)  # chat handler also stamps the usage chunk
    assert v["tpot_ms"]["mean"] == approx((210 - 50) / 4)
    assert v["itl_ms"]["count"] == 4 and v["itl_ms"]["max"] == approx(50)  # pooled chunk gaps
    c = view("vllm", [record()], "completions")
    assert c["e2el_ms"]["mean"] == approx(200)  # completions: last choices chunk


def test_guidellm_view() -> None:
    v = view("guidellm", [record()])
    assert v["time_to_first_token_ms"]["mean"] == approx(100)
    assert v["time_per_output_token_ms"]["mean"] == approx(200 / 5)  # includes TTFT
    assert v["inter_token_latency_ms"]["mean"] == approx(100 / 4)  # = vLLM-style TPOT
    assert v["request_latency_s"]["mean"] == approx(0.22)


def test_genai_perf_view() -> None:
    v = view("genai-perf", [record()])
    assert v["time_to_first_token_ms"]["mean"] == approx(50)  # first response of any kind
    assert v["request_latency_ms"]["mean"] == approx(210)  # last response
    assert v["inter_token_latency_ms"]["mean"] == approx((210 - 50) / 4)
    assert v["output_token_throughput_per_user"]["mean"] == approx(4 / 0.16)
    assert set(v["request_latency_ms"]) >= {"p75", "p90", "p99", "stddev", "min", "max"}


def test_llmperf_view() -> None:
    v = view("llmperf", [record()])
    assert v["ttft_s"]["mean"] == approx(0.10)
    assert v["inter_token_latency_s"]["mean"] == approx(0.20 / 5)  # (TTFT + Σ gaps) / N
    assert v["end_to_end_latency_s"]["mean"] == approx(0.22)
    assert v["request_output_throughput_token_per_s"]["mean"] == approx(5 / 0.22)


def test_unknown_view_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected one of vllm, guidellm"):
        view("aiperf2", [record()])


def test_summary_schema_and_goodput() -> None:
    recs = [record(0), record(1, shift=1.0)]
    failed = record(2, shift=2.0)
    failed.error_class, failed.error, failed.events = "http_5xx", "HTTP 500", []
    s = summarize_run([*recs, failed], {"ttft": 250.0, "tpot": 20.0})
    assert s["requests"]["completed"] == 2 and s["requests"]["failed"] == 1
    assert s["requests"]["errors_by_class"] == {"http_5xx": 1}
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        assert {"mean", "p50", "p90", "p99"} <= set(s[key])
    assert s["ttft_ms"]["mean"] == approx(200)
    # TTFT 200 ≤ 250 passes, TPOT 25 > 20 fails; the failed request misses everything
    assert s["goodput"]["attainment"] == {"ttft": approx(2 / 3), "tpot": 0.0, "all": 0.0}
    assert s["goodput"]["requests_per_s"] == 0.0
    duration = (1.22 + 2.0) - 0.90
    assert s["duration_s"] == approx(duration)
    assert s["throughput"]["output_tokens_per_s"] == approx(10 / duration)
