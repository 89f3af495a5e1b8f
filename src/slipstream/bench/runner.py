"""Runs a plan: in this process, or in worker processes with one event loop each.

Worker processes keep the GIL out of the measurement: each has its own interpreter, loop and
connections, and the parent only aggregates progress and the records sent at the end.
All processes read ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux, one clock for the
whole machine), so their stamps share one time base.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import Empty
from time import perf_counter
from typing import Any, TypeVar

from slipstream.bench.plan import RunPlan
from slipstream.bench.record import RequestRecord
from slipstream.bench.schedule import planned_offsets
from slipstream.bench.worker import WorkerResult, WorkerRun
from slipstream.bench.workload import Workload

T = TypeVar("T")
PER_WORKER_RATE = 800.0  # req/s one loop sustains with sub-ms stamping error (see docs/bench.md)
PER_WORKER_STREAMS = 128  # one loop's burst of 256 chunk reads already costs ms


@dataclass
class Progress:
    completed: int = 0
    failed: int = 0
    chunks: int = 0
    elapsed: float = 0.0
    # (E2E s, first-byte s, failed) of requests finished since the last periodic summary;
    # the consumer (a soak's --report-every) clears it after printing
    window: list[tuple[float, float, bool]] = field(default_factory=list)


@dataclass
class RunOutcome:
    plan: RunPlan
    records: list[RequestRecord]
    loop_lag: list[float] = field(default_factory=list)
    workers: int = 1
    connections: int = 0
    started_at: str = ""
    t0: float = 0.0  # perf_counter() of the run start; record times are relative to it


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when available, without changing the global loop policy."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def peak_rate(plan: RunPlan) -> float | None:
    """The highest request rate the open-loop schedule reaches (None: closed loop)."""
    sched = plan.schedule
    if sched.trace is not None:
        offsets = planned_offsets(sched, plan.requests, plan.duration)
        return len(offsets) / offsets[-1] if len(offsets) > 1 and offsets[-1] > 0 else 1.0
    if sched.rate is None:
        return None
    return max(sched.rate, sched.ramp_to or 0.0, sched.spike[0] if sched.spike else 0.0)


def auto_workers(plan: RunPlan) -> int:
    rate = peak_rate(plan)
    need = (
        math.ceil(rate / PER_WORKER_RATE)
        if rate is not None
        else math.ceil((plan.schedule.concurrency or 1) / PER_WORKER_STREAMS)
    )
    return max(1, min(os.cpu_count() or 1, need))


def _merge(
    plan: RunPlan, results: list[WorkerResult], started: str, workers: int, t0: float
) -> RunOutcome:
    records = sorted((r for res in results for r in res.records), key=lambda r: r.index)
    lag = [x for res in results for x in res.loop_lag]
    conns = sum(r.connections for r in results)
    return RunOutcome(plan, records, lag, workers, conns, started, t0)


def run_inline(plan: RunPlan) -> RunOutcome:
    """One loop in this process (no progress display)."""
    workload = Workload(plan.workload)
    started = datetime.now(UTC).isoformat()

    t0 = [0.0]

    async def main() -> WorkerResult:
        t0[0] = perf_counter() + 0.005
        return await WorkerRun(plan, workload, 0, 1).run(t0[0])

    return _merge(plan, [run_loop(main())], started, 1, t0[0])


def _worker_main(plan: RunPlan, k: int, n: int, up: Any, start: Any) -> None:
    try:
        run = WorkerRun(plan, Workload(plan.workload), k, n)
        up.put(("ready", k))
        t0 = start.get()
        result = run_loop(
            run.run(t0, lambda c, f, ch, samples: up.put(("progress", k, c, f, ch, samples)))
        )
        up.put(("result", k, result))
    except BaseException:
        up.put(("error", k, traceback.format_exc()))


def run_processes(
    plan: RunPlan, workers: int, on_progress: Callable[[Progress], None] | None = None
) -> RunOutcome:
    """Spawn ``workers`` processes, start them on one shared ``t0``, gather their records."""
    ctx = mp.get_context("spawn")
    up = ctx.Queue()
    starts = [ctx.Queue() for _ in range(workers)]
    procs = [
        ctx.Process(target=_worker_main, args=(plan, k, workers, up, starts[k]), daemon=True)
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    per_worker: dict[int, tuple[int, int, int]] = {}
    results: list[WorkerResult] = []
    ready = 0
    t0 = 0.0
    started = ""
    window: list[tuple[float, float, bool]] = []
    try:
        while len(results) < workers:
            try:
                msg = up.get(timeout=0.25)
            except Empty:
                if any(not p.is_alive() and p.exitcode for p in procs):
                    raise RuntimeError("a bench worker process died") from None
                msg = None
            if msg is not None:
                kind, k = msg[0], msg[1]
                if kind == "error":
                    raise RuntimeError(f"bench worker {k} failed:\n{msg[2]}")
                if kind == "ready":
                    ready += 1
                    if ready == workers:
                        t0 = perf_counter() + 0.05
                        started = datetime.now(UTC).isoformat()
                        for q in starts:
                            q.put(t0)
                elif kind == "progress":
                    per_worker[k] = msg[2:5]
                    window.extend(msg[5])
                elif kind == "result":
                    results.append(msg[2])
            if on_progress is not None and t0:
                done = [sum(v[i] for v in per_worker.values()) for i in range(3)]
                on_progress(Progress(*done, max(0.0, perf_counter() - t0), window))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return _merge(plan, results, started, workers, t0)
