"""Open loop: a 2 s server stall shows up in requests *scheduled* during it (no omission)."""

from __future__ import annotations

import itertools
import statistics

from slipstream.bench.metrics import request_metrics
from slipstream.bench.schedule import ScheduleConfig, planned_offsets

from .conftest import run, wait_ready
from .mock_server import MockServer


def test_stall_shows_in_latency_of_requests_scheduled_during_it() -> None:
    stall_s = 2.0
    with MockServer(ttft_ms=5, itl_ms=2, stall_at=10, stall_s=stall_s) as srv:
        wait_ready(srv)
        out = run(srv.url, rate=20.0, pattern="constant", duration=3.0, output=4)
        truth = srv.truth()
    assert len(out.records) == 60 and all(r.ok for r in out.records)
    stall_start = min(sorted(t["arrival"] for t in truth.values())[9:]) - out.t0
    stall_end = stall_start + stall_s
    during = [r for r in out.records if stall_start + 0.05 < r.scheduled < stall_end - 0.05]
    assert len(during) >= 30
    for r in during:
        m = request_metrics(r)
        assert m is not None
        owed = stall_end - r.scheduled  # the time this request waited for the frozen server
        assert owed - 0.01 <= m.ttft <= owed + 0.25, (r.scheduled, m.ttft, owed)
        assert m.dispatch_lag < 0.05  # still sent on time: the client did not wait
    after = [request_metrics(r) for r in out.records if r.scheduled > stall_end + 0.3]
    assert after and all(m is not None and m.ttft < 0.1 for m in after)


def test_arrival_patterns_have_the_requested_rate() -> None:
    for pattern in ("constant", "poisson", "gamma"):
        cfg = ScheduleConfig(rate=100.0, pattern=pattern, burstiness=0.5, seed=1)
        offsets = planned_offsets(cfg, requests=4000, duration=None)
        assert len(offsets) == 4000 and offsets[0] == 0.0
        assert abs(len(offsets) / offsets[-1] - 100.0) < 8.0, pattern

    def gaps(pattern: str) -> list[float]:
        cfg = ScheduleConfig(rate=100.0, pattern=pattern, burstiness=0.25)
        offsets = planned_offsets(cfg, 2000, None)
        return [b - a for a, b in itertools.pairwise(offsets)]

    cv = {
        p: statistics.pstdev(gaps(p)) / statistics.mean(gaps(p))
        for p in ("constant", "poisson", "gamma")
    }
    assert cv["constant"] < 1e-6 and 0.85 < cv["poisson"] < 1.15 and cv["gamma"] > 1.5
    assert planned_offsets(ScheduleConfig(rate=10.0, pattern="constant"), None, 1.0)[-1] < 1.0
