"""Reported TTFT/TPOT/ITL match a server with known timing, within 2 % or 1 ms."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterable

import pytest

from slipstream.bench.metrics import request_metrics, summarize_run
from slipstream.bench.runner import auto_workers, run_processes

from .conftest import close, make_plan, run
from .mock_server import MockServer


def mostly(oks: Iterable[bool], share: float = 0.9) -> bool:
    values = list(oks)
    return sum(values) >= share * len(values)


def up_to_three_tries(check: Callable[[], None]) -> None:
    """Other processes on a shared 2-core box can only make stamps *later*, never better;
    a client bug fails every try, a preempted run passes on the next one."""
    for attempt in range(3):
        try:
            check()
            return
        except AssertionError:
            if attempt == 2:
                raise


@pytest.mark.parametrize("chunk_tokens", [1, 4])
def test_concurrency_one_matches_truth(server: MockServer, chunk_tokens: int) -> None:
    """Truth = the server's own write times (same machine-wide clock) and its configuration."""
    up_to_three_tries(lambda: _check_concurrency_one(server, chunk_tokens))


def _check_concurrency_one(server: MockServer, chunk_tokens: int) -> None:
    itl, n, k = 0.010, 16, chunk_tokens
    out = run(
        server.url,
        concurrency=1,
        requests=8,
        output=n,
        mock={"ttft_ms": 40, "itl_ms": 10, "chunk_tokens": k},
    )
    truth = server.truth()
    assert [r.error for r in out.records] == [None] * 8
    ttft_ok: list[bool] = []
    tpot_ok: list[bool] = []
    gap_ok: list[bool] = []
    config_ok: list[bool] = []
    for r in out.records:
        m = request_metrics(r)
        assert m is not None
        writes = truth[f"bench-{r.index}"]["writes"]
        assert len(writes) == len(r.content_events) == -(-n // k)
        ttft_ok.append(close(m.ttft_from_send, writes[0] - (out.t0 + r.sent)))
        if r.index > 0:  # the first request also opened the connection (counted in its TTFT)
            assert close(m.ttft, m.ttft_from_send, abs_s=0.0005)  # closed loop: no queue
        tpot_ok.append(close(m.tpot, (writes[-1] - writes[0]) / (n - 1)))
        true_gaps = [(b - a) / k for a, b in itertools.pairwise(writes)]
        # per-sample: a shared, loaded 2-core box preempts a process now and then
        gap_ok.extend(close(g, t) for g, t in zip(m.token_gaps[::k], true_gaps, strict=True))
        # and the server kept its configured schedule, so the numbers are the configured ones
        config_ok.append(close(m.tpot, itl * (n - k) / (n - 1)))
        config_ok.append(close(statistics.mean(m.token_gaps), itl))
        server_gaps = [b - a for a, b in itertools.pairwise(writes)]
        gap_ok.extend(close(g, t) for g, t in zip(m.chunk_gaps, server_gaps, strict=True))
        assert m.output_tokens == n == r.usage["completion_tokens"]
    # typical error is 0.1-0.2 ms; a busy shared 2-core box preempts a process now and then
    assert mostly(ttft_ok, 0.75) and mostly(tpot_ok, 0.75), (ttft_ok, tpot_ok)
    assert mostly(gap_ok, 0.9) and mostly(config_ok, 0.75), (gap_ok, config_ok)
    s = summarize_run(out.records, {})
    assert close(s["itl_ms"]["p50"] / 1000, itl)
    assert s["requests"]["completed"] == 8 and s["requests"]["failed"] == 0


def test_per_chunk_usage_gives_exact_token_deltas(server: MockServer) -> None:
    out = run(
        server.url,
        concurrency=2,
        requests=4,
        output=10,
        mock={"ttft_ms": 5, "itl_ms": 2, "chunk_tokens": 3, "usage_per_chunk": True},
    )
    for r in out.records:
        assert r.token_source == "usage_per_chunk"
        assert [e.tokens for e in r.content_events] == [3, 3, 3, 1]
        assert r.output_tokens == r.usage["completion_tokens"] == 10


def test_completions_endpoint(server: MockServer) -> None:
    out = run(
        server.url,
        concurrency=1,
        requests=2,
        output=5,
        endpoint="completions",
        mock={"ttft_ms": 5, "itl_ms": 1},
    )
    assert all(r.ok and r.output_tokens == 5 for r in out.records)


def test_high_concurrency_matches_server_truth() -> None:
    up_to_three_tries(_check_high_concurrency)


def _check_high_concurrency() -> None:
    """256 streams at once, over 2 worker processes (what auto_workers picks for 256 streams);
    every client stamp is compared with the server's write time.

    Both processes read the machine-wide monotonic clock, so ``client stamp − server write``
    is the client's timestamp error (delivery plus event-loop delay).
    """
    conc, n, itl = 256, 8, 0.025
    with MockServer(use_uvloop=True, ttft_ms=50, itl_ms=25, chunk_tokens=1) as srv:
        from .conftest import wait_ready

        wait_ready(srv)
        plan = make_plan(srv.url, concurrency=conc, requests=conc, output=n)
        assert auto_workers(plan) == 2
        out = run_processes(plan, 2)
        truth = srv.truth()
    assert sum(r.ok for r in out.records) == conc
    stamp_err, ttft_err, tpot_err = [], [], []
    for r in out.records:
        tr = truth[f"bench-{r.index}"]
        writes = tr["writes"]
        stamps = [out.t0 + e.t for e in r.content_events]
        assert len(stamps) == len(writes) == n
        stamp_err += [s - w for s, w in zip(stamps, writes, strict=True)]
        m = request_metrics(r)
        assert m is not None
        true_ttft = writes[0] - (out.t0 + r.sent)
        ttft_err.append(abs(m.ttft_from_send - true_ttft) / max(0.001, 0.02 * true_ttft))
        true_tpot = (writes[-1] - writes[0]) / (n - 1)
        tpot_err.append(abs(m.tpot - true_tpot) / max(0.001, 0.02 * true_tpot))
    stamp_err.sort()
    print(
        f"stamp error ms p50 {stamp_err[len(stamp_err) // 2] * 1000:.3f} "
        f"p99 {stamp_err[int(0.99 * len(stamp_err))] * 1000:.3f}"
    )
    assert stamp_err[0] >= 0  # nothing is seen before it is sent
    median = stamp_err[len(stamp_err) // 2]
    assert median < 0.001, f"median stamp error {median * 1000:.2f} ms"
    # within tolerance (ratio <= 1) for the large majority; a loaded 2-core box adds outliers,
    # and the first chunks of 256 streams that start together arrive as one burst
    assert statistics.median(tpot_err) <= 1
    assert mostly((e <= 1 for e in tpot_err), 0.75)
    assert mostly((e <= 1 for e in ttft_err), 0.5)
    s = summarize_run(out.records, {})
    assert close(s["itl_ms"]["p50"] / 1000, itl, rel=0.1)
