"""Ramp, spike, soak, trace replay and multi-turn sessions, against the known-timing server."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.bench.profile import RateProfile
from slipstream.bench.runner import run_inline
from slipstream.bench.schedule import ScheduleConfig, planned_offsets
from slipstream.bench.workload import WorkloadConfig
from slipstream.cli.bench import app

from .conftest import make_plan
from .mock_server import TOKEN, MockServer


def in_window(offsets: list[float], a: float, b: float) -> int:
    return sum(a <= t < b for t in offsets)


def test_ramp_rate_grows_linearly() -> None:
    sched = ScheduleConfig(rate=10, ramp_to=30, pattern="constant")
    offs = planned_offsets(sched, None, 10.0)
    assert len(offs) == pytest.approx(RateProfile.ramp(10, 30, 10).expected_arrivals(), abs=1)
    assert in_window(offs, 0, 1) == pytest.approx(11, abs=1)  # r(0.5) = 11 req/s
    assert in_window(offs, 9, 10) == pytest.approx(29, abs=1)  # r(9.5) = 29 req/s
    assert offs == sorted(offs) and offs[0] == 0.0


def test_poisson_ramp_keeps_its_mean() -> None:
    sched = ScheduleConfig(rate=20, ramp_to=60, pattern="poisson", seed=3)
    offs = planned_offsets(sched, None, 20.0)
    expected = 800  # (20 + 60) / 2 × 20 s
    assert abs(len(offs) - expected) < 4 * expected**0.5
    assert in_window(offs, 15, 20) > 1.5 * in_window(offs, 0, 5)  # 275 vs 125 expected


def test_spike_adds_the_peak_window_only() -> None:
    sched = ScheduleConfig(rate=10, spike=(50, 2, 1), pattern="constant")
    offs = planned_offsets(sched, None, 5.0)
    assert in_window(offs, 2, 3) == 50
    assert in_window(offs, 0, 2) == 20 and in_window(offs, 3, 5) == 20


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"rate": 5, "ramp_to": 10, "spike": (9, 1, 1)}, "not both"),
        ({"concurrency": 2, "ramp_to": 10}, "need a starting/base --rate"),
        ({"rate": 5, "trace": "x.jsonl"}, "--trace sets the arrival times"),
        ({"rate": 5, "spike": (0, 1, 1)}, "PEAK > 0"),
    ],
)
def test_bad_profiles(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduleConfig(**kw)  # type: ignore[arg-type]


def test_profile_needs_a_duration() -> None:
    with pytest.raises(ValueError, match="need --duration"):
        planned_offsets(ScheduleConfig(rate=5, ramp_to=10), 10, None)


def test_trace_replay_keeps_arrivals_and_lengths(server: MockServer, tmp_path: Path) -> None:
    rows = [(100.0, 12, 3), (100.05, 40, 5), (100.3, 7, 2), (100.31, 25, 4)]
    trace = tmp_path / "trace.jsonl"
    trace.write_text(
        "\n".join(
            json.dumps({"timestamp": t, "input_tokens": i, "output_tokens": o}) for t, i, o in rows
        )
    )
    plan = make_plan(server.url, concurrency=1, requests=4, mock={"ttft_ms": 5, "itl_ms": 1})
    plan = replace(
        plan,
        schedule=ScheduleConfig(trace=str(trace)),
        workload=replace(plan.workload, trace=str(trace)),
    )
    out = run_inline(plan)
    recs = sorted(out.records, key=lambda r: r.index)
    start = recs[0].scheduled
    assert [round(r.scheduled - start, 6) for r in recs] == [0.0, 0.05, 0.3, 0.31]
    assert all(0 <= r.sent - r.scheduled < 0.05 for r in recs)  # never early
    assert [r.max_tokens for r in recs] == [o for _, _, o in rows]
    assert [r.output_tokens for r in recs] == [o for _, _, o in rows]
    assert [r.input_tokens for r in recs] == [i for _, i, _ in rows]


def test_trace_errors(tmp_path: Path) -> None:
    from slipstream.bench.trace import load_trace

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"offset": 0, "input_tokens": 3}\n')
    with pytest.raises(ValueError, match="line 1: needs one of output_tokens"):
        load_trace(bad)
    ms = tmp_path / "ms.jsonl"
    ms.write_text('{"timestamp": 5000, "input_length": 3, "output_length": 2}\n'
                  '{"timestamp": 5500, "input_length": 3, "output_length": 2}\n')  # fmt: skip
    assert [e.offset for e in load_trace(ms, "ms")] == [0.0, 0.5]


def test_sessions_carry_history_and_think_time(server: MockServer) -> None:
    turns, think, out_tokens = 3, 0.05, 4
    plan = make_plan(
        server.url, concurrency=2, requests=2, output=out_tokens, mock={"ttft_ms": 5, "itl_ms": 1}
    )
    plan = replace(plan, workload=replace(plan.workload, turns=turns, think_time=think))
    out = run_inline(plan)
    truth = server.truth()
    assert len(out.records) == 2 * turns and all(r.ok for r in out.records)
    by_index = {r.index: r for r in out.records}
    for session in range(2):
        for turn in range(turns):
            r = by_index[session * turns + turn]
            sent = truth[f"bench-{r.index}"]
            # turn k sends k previous user/assistant pairs, then the new user message
            assert sent["roles"] == ["user", "assistant"] * turn + ["user"]
            assert sent["replies"] == [TOKEN * out_tokens] * turn  # the server's real replies
            if turn:
                prev = by_index[r.index - 1]
                assert r.scheduled == pytest.approx(prev.done_at + think, abs=1e-6)
                assert r.input_tokens > prev.input_tokens  # the conversation grows


def test_workload_rejects_bad_turns() -> None:
    with pytest.raises(ValueError, match="--turns"):
        WorkloadConfig(model="m", turns=0)


def test_soak_prints_a_summary_per_window(server: MockServer, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "--url", server.url, "--model", "mock", "--workers", "1", "--rate", "20",
            "--pattern", "constant", "--duration", "1.6", "--report-every", "0.5",
            "--output-tokens", "4", "--output", str(tmp_path / "soak.json"),
            "--extra-body", json.dumps({"mock": {"ttft_ms": 5, "itl_ms": 1}}),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    windows = [line for line in res.output.splitlines() if line.startswith("[")]
    assert len(windows) >= 2, res.output
    assert "req/s" in windows[0] and "E2E p50" in windows[0] and "0 failed" in windows[0]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["summary"]["requests"]["completed"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "5", "--spike", "5:1"], "bad --spike"),
        (["--rate", "5", "--ramp-to", "9", "--requests", "3"], "need --duration"),
        (["--concurrency", "1", "--think-time", "a"], "bad --think-time"),
        (["--concurrency", "1", "--trace", "/nonexistent.jsonl"], "no such file"),
        (["--concurrency", "1", "--turns", "0"], "--turns must be >= 1"),
        (["--rate", "1", "--workers", "0", "--report-every", "5"], "needs worker processes"),
    ],
)
def test_cli_rejects_bad_shapes(tmp_path: Path, args: list[str], message: str) -> None:
    base = ["--url", "http://127.0.0.1:9/v1", "--model", "m", "--output", str(tmp_path / "r")]
    res = CliRunner().invoke(app, base + args)
    assert res.exit_code == 2 and message in res.output, res.output


def test_auto_workers_follow_the_peak_rate() -> None:
    from slipstream.bench.runner import PER_WORKER_RATE, auto_workers, peak_rate

    plan = make_plan("http://127.0.0.1:9/v1", rate=10, duration=5)
    spiky = replace(plan, schedule=replace(plan.schedule, spike=(2 * PER_WORKER_RATE, 1, 1)))
    assert peak_rate(spiky) == 2 * PER_WORKER_RATE
    assert auto_workers(spiky) == min(2, os.cpu_count() or 1) and auto_workers(plan) == 1
