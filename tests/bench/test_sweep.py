"""--sweep and --find-max against a mock server with a known capacity.

The server serves at most 2 streams at once; each takes 20 ms + 3 × 10 ms = 50 ms, so it
completes at most 40 requests/s. Below that, constant arrivals never queue (TTFT ≈ 20 ms);
above it the queue grows and TTFT with it, so goodput (TTFT ≤ 100 ms for ≥ 90 % of
requests) holds up to ~43 req/s for a 1-second run and collapses beyond.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.bench.runner import run_inline
from slipstream.bench.sweep import find_max, parse_sweep, run_sweep
from slipstream.cli.bench import app

from .conftest import make_plan, wait_ready
from .mock_server import MockServer

MOCK = {"ttft_ms": 20, "itl_ms": 10, "chunk_tokens": 1}
CAPACITY_RPS = 2 / 0.050


@pytest.fixture(scope="module")
def limited() -> Iterator[MockServer]:
    with MockServer(capacity=2, **MOCK) as srv:
        wait_ready(srv)
        yield srv


def test_parse_sweep() -> None:
    assert parse_sweep("rate=4,1,2") == ("rate", [1.0, 2.0, 4.0])
    assert parse_sweep("concurrency:8,1") == ("concurrency", [1.0, 8.0])
    for bad in ("rates=1", "rate=", "rate=a", "rate=-1", "concurrency=1.5"):
        with pytest.raises(ValueError, match="bad --sweep"):
            parse_sweep(bad)


def test_concurrency_sweep_shows_the_capacity(limited: MockServer) -> None:
    plan = make_plan(limited.url, concurrency=1, requests=16, output=4)
    steps = run_sweep(plan, "concurrency", [1, 2, 4], run_inline)
    rps = [s.result["summary"]["throughput"]["requests_per_s"] for s in steps]
    ttft = [s.result["summary"]["ttft_ms"]["p50"] for s in steps]
    assert [s.value for s in steps] == [1, 2, 4]
    assert rps[1] > 1.6 * rps[0]  # a second slot doubles throughput
    assert rps[2] < 1.25 * rps[1] <= 1.25 * CAPACITY_RPS  # a third and fourth only queue
    assert ttft[2] > ttft[1] + 20  # ... and the queueing shows in TTFT


def test_find_max_brackets_the_capacity(limited: MockServer) -> None:
    plan = make_plan(limited.url, rate=5, pattern="constant", duration=1.0, output=4)
    found = find_max(plan, {"ttft": 100.0}, run_inline, start=5, tolerance=0.12, max_steps=9)
    rates = [s.value for s in found.steps]
    assert rates[:3] == [5, 10, 20]  # doubling first ...
    # 40 req/s is the capacity; a loaded shared box can only make steps miss earlier
    assert found.best is not None and 20 <= found.best <= 50, rates
    passed = [s for s in found.steps if s.passed]
    missed = [s for s in found.steps if not s.passed]
    assert missed and max(s.value for s in passed) == found.best < min(s.value for s in missed)
    assert all(s.goodput is not None and s.goodput < 0.9 for s in missed)
    assert all(s.goodput is not None and s.goodput >= 0.9 for s in passed)
    # ... then bisection: the last two steps lie between the last pass and first miss found
    assert all(20 <= r <= 80 for r in rates[3:])


def test_find_max_needs_slos(limited: MockServer) -> None:
    plan = make_plan(limited.url, rate=5, requests=5)
    with pytest.raises(ValueError, match="needs per-request SLOs"):
        find_max(plan, {}, run_inline)


def test_cli_sweep_writes_table_and_records(limited: MockServer, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    res = CliRunner().invoke(
        app,
        [
            "--url", limited.url, "--model", "mock", "--workers", "0", "--output", str(out),
            "--requests", "6", "--output-tokens", "4", "--sweep", "concurrency=1,2",
            "--goodput", "ttft_ms=1000", "--extra-body", json.dumps({"mock": MOCK}),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "slipstream.bench.sweep/v1" and doc["kind"] == "concurrency"
    assert [row["concurrency"] for row in doc["table"]] == [1, 2]
    assert all(row["goodput"] == 1.0 for row in doc["table"])
    for step in doc["steps"]:
        assert step["summary"]["requests"]["completed"] == 6
        assert len(Path(step["records_path"]).read_text().splitlines()) == 6
    assert "Sweep over concurrency" in res.output


def test_cli_find_max_shows_steps(limited: MockServer, tmp_path: Path) -> None:
    out = tmp_path / "max.json"
    res = CliRunner().invoke(
        app,
        [
            "--url", limited.url, "--model", "mock", "--workers", "0", "--output", str(out),
            "--duration", "0.5", "--output-tokens", "4", "--pattern", "constant", "--find-max",
            "--rate", "20", "--max-rate", "40", "--slo", "ttft_p99_ms=100",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["find_max"]["goodput_target"] == 0.9
    assert [row["rate"] for row in doc["table"]][:2] == [20, 40]
    assert "find-max steps" in res.output and "highest rate with goodput" in res.output
    assert doc["find_max"]["best_rate"] in {row["rate"] for row in doc["table"] if row["passed"]}
