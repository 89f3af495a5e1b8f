"""Shared fixtures: a known-timing mock server and a helper that runs a plan in-process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from slipstream.bench.lengths import LengthDist
from slipstream.bench.plan import RunPlan
from slipstream.bench.runner import RunOutcome, run_inline
from slipstream.bench.schedule import ScheduleConfig
from slipstream.bench.workload import WorkloadConfig

from .mock_server import MockServer


def wait_ready(server: MockServer) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            server.truth()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mock server did not start")


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(ttft_ms=40.0, itl_ms=10.0, chunk_tokens=1) as srv:
        wait_ready(srv)
        yield srv


def make_plan(
    url: str, *, output: int = 16, mock: dict[str, Any] | None = None, **kw: Any
) -> RunPlan:
    schedule = ScheduleConfig(
        concurrency=kw.pop("concurrency", None),
        rate=kw.pop("rate", None),
        pattern=kw.pop("pattern", "poisson"),
    )
    workload = WorkloadConfig(
        model="mock",
        input=LengthDist("fixed", kw.pop("input_tokens", 32)),
        output=LengthDist("fixed", output),
        extra_body={"mock": mock} if mock else {},
        endpoint=kw.pop("endpoint", "chat"),
    )
    return RunPlan(url=url, workload=workload, schedule=schedule, workers=0, **kw)


def run(url: str, **kw: Any) -> RunOutcome:
    return run_inline(make_plan(url, **kw))


def close(measured: float, truth: float, rel: float = 0.02, abs_s: float = 0.001) -> bool:
    """The acceptance tolerance: within 2 % or 1 ms."""
    return abs(measured - truth) <= max(abs_s, rel * abs(truth))
