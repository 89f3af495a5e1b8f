"""One event loop driving its share of the run: dispatch on schedule, stamp, parse afterwards.

Worker ``k`` of ``W`` owns request indices ``k, k+W, k+2W, ...`` (and in closed loop its share
of the concurrency), so workers never talk to each other during the run.
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter

from slipstream.bench.http_client import ConnectionPool, Target
from slipstream.bench.looplag import LoopLagProbe
from slipstream.bench.plan import RunPlan
from slipstream.bench.record import Exchange, RequestRecord
from slipstream.bench.schedule import planned_offsets
from slipstream.bench.sse import parse_exchange, response_text
from slipstream.bench.workload import RequestSpec, Workload

# (completed, failed, chunks so far, samples since the last call); a sample is
# (E2E s, first-byte s, failed) from hot-path stamps only, for periodic (soak) summaries
Sample = tuple[float, float, bool]
ProgressFn = Callable[[int, int, int, list[Sample]], None]


@dataclass
class WorkerResult:
    worker: int
    records: list[RequestRecord] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)
    connections: int = 0


async def sleep_until(when: float) -> None:
    """Never return before ``when``: uvloop (libuv) timers have 1 ms granularity and can
    fire up to a millisecond early, which would send a request before it is due."""
    while (delay := when - perf_counter()) > 0:
        await asyncio.sleep(delay)


def share(total: int, worker: int, workers: int) -> int:
    return total // workers + (1 if worker < total % workers else 0)


class WorkerRun:
    """State of one worker during a run (kept out of globals: one instance per loop)."""

    def __init__(self, plan: RunPlan, workload: Workload, worker: int, workers: int) -> None:
        self.plan, self.workload = plan, workload
        self.worker, self.workers = worker, workers
        self.pool = ConnectionPool(Target.parse(plan.url, plan.api_key))
        self.finished: list[Exchange] = []
        self.failed = 0
        self.chunks = 0
        self.reported = 0  # finished exchanges already sent as progress samples
        self.sem: asyncio.Semaphore | None = None  # open loop with a --concurrency cap

    async def _one(self, spec: RequestSpec, scheduled: float) -> Exchange:
        if self.sem is None:
            return await self._send(spec, scheduled)
        async with self.sem:
            return await self._send(spec, scheduled)

    async def _session(self, session: int, start: float) -> None:
        """A multi-turn conversation: each turn waits for the previous reply + think time,
        and is scheduled at that moment (so its latency still counts from when it was due)."""
        cfg = self.plan.workload
        rng = random.Random(f"{cfg.seed}:think:{session}")
        history: list[dict[str, str]] = []
        scheduled = start
        for turn in range(cfg.turns):
            spec, messages = self.workload.turn_request(session, turn, history)
            await sleep_until(scheduled)
            ex = await self._one(spec, scheduled)
            if ex.error_class is not None or ex.status != 200:
                return  # the conversation cannot go on without the reply
            reply = response_text(ex.pieces)  # one small parse between turns, not per read
            history = [*messages, {"role": "assistant", "content": reply}]
            scheduled = ex.done_at + cfg.think(rng)

    async def _send(self, spec: RequestSpec, scheduled: float) -> Exchange:
        ex = Exchange(spec.index, scheduled, self.worker)
        ex.max_tokens, ex.input_tokens, ex.prefix_id = (
            spec.max_tokens,
            spec.input_tokens,
            spec.prefix_id,
        )
        await self.pool.send(ex, self.plan.path, spec.body, self.plan.timeout)
        self.finished.append(ex)
        self.chunks += len(ex.pieces)
        if ex.error_class is not None or ex.status != 200:
            self.failed += 1
        return ex

    async def _open_loop(self, t0: float) -> None:
        plan = self.plan
        offsets = planned_offsets(plan.schedule, plan.requests, plan.duration)
        cap = plan.schedule.concurrency
        if cap:
            self.sem = asyncio.Semaphore(share(cap, self.worker, self.workers))
        tasks: set[asyncio.Task[object]] = set()
        sessions = plan.workload.turns > 1  # then each arrival starts a conversation

        for i in range(self.worker, len(offsets), self.workers):
            # built before its time: off the stamping path
            spec = None if sessions else self.workload.request(i)
            scheduled = t0 + offsets[i]
            await sleep_until(scheduled)
            coro = self._session(i, scheduled) if spec is None else self._one(spec, scheduled)
            task: asyncio.Task[object] = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))

    async def _closed_loop(self, t0: float) -> None:
        plan = self.plan
        assert plan.schedule.concurrency is not None
        slots = share(plan.schedule.concurrency, self.worker, self.workers)
        end = t0 + plan.duration if plan.duration is not None else float("inf")
        next_index = [self.worker]

        async def slot() -> None:
            while True:
                i = next_index[0]
                if plan.requests is not None and i >= plan.requests:
                    return
                next_index[0] += self.workers
                if plan.workload.turns > 1:
                    now = perf_counter()
                    if now >= end:
                        return
                    await self._session(i, now)
                    continue
                spec = self.workload.request(i)
                now = perf_counter()
                if now >= end:
                    return
                await self._one(spec, now)

        await sleep_until(t0)
        await asyncio.gather(*(slot() for _ in range(slots)))

    async def run(self, t0: float, progress: ProgressFn | None = None) -> WorkerResult:
        # A cyclic-GC pass over a big heap stalls the loop for many ms and every read waiting
        # behind it is stamped late; the run allocates few cycles, so collect afterwards.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await self._run(t0, progress)
        finally:
            if gc_was_enabled:
                gc.enable()

    async def _run(self, t0: float, progress: ProgressFn | None) -> WorkerResult:
        probe = LoopLagProbe()
        probe.start()
        reporter = asyncio.create_task(self._report(progress)) if progress else None
        try:
            if self.plan.schedule.open_loop:
                await self._open_loop(t0)
            else:
                await self._closed_loop(t0)
        finally:
            probe.stop()
            if reporter is not None:
                reporter.cancel()
            self.pool.close()
        if progress is not None:
            progress(len(self.finished), self.failed, self.chunks, self._samples())
        counter = self.workload.counter if self.plan.workload.tokenizer else None
        records = [parse_exchange(ex, t0, counter) for ex in self.finished]
        return WorkerResult(self.worker, records, probe.samples, self.pool.opened)

    def _samples(self) -> list[Sample]:
        new, self.reported = self.finished[self.reported :], len(self.finished)
        return [
            (
                ex.done_at - ex.scheduled,
                (ex.pieces[0][0] if ex.pieces else ex.done_at) - ex.scheduled,
                ex.error_class is not None or ex.status != 200,
            )
            for ex in new
        ]

    async def _report(self, progress: ProgressFn) -> None:
        while True:
            await asyncio.sleep(0.25)
            progress(len(self.finished), self.failed, self.chunks, self._samples())


def install_fast_loop() -> None:
    """uvloop when installed (it is, via uvicorn[standard]): lower per-event overhead."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
