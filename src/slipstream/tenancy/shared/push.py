"""Settlements and given-back leases reach Redis in batches: one PUSH script call per
`PUSH_S` for everything queued in the leases meanwhile (or sooner, just ahead of the next
admission call, which must see it first). Settles that want their budget crossings wait for
the push that carries them. While leases are held, a keeper gives idle ones back and keeps
leased slots alive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from slipstream.tenancy.admission import Crossing, Reservation
from slipstream.tenancy.local.budgets import MemoryBudgets
from slipstream.tenancy.shared.guard import RedisGuard
from slipstream.tenancy.shared.leases import Leases
from slipstream.tenancy.shared.records import IDLE_S, BookPush, RatePush
from slipstream.tenancy.shared.replies import parse_push
from slipstream.tenancy.shared.runner import ScriptRunner
from slipstream.tenancy.shared.scripts import PUSH, push_call

PUSH_S = 0.01  # settlements wait at most this long to share one push call
KEEP_S = 0.25  # how often idle leases are looked for


class Pusher:
    def __init__(
        self,
        leases: Leases,
        runner: ScriptRunner,
        guard: RedisGuard,
        fallback: MemoryBudgets,
        prefix: str,
        lease_ttl_s: float,
    ) -> None:
        self.leases, self.runner = leases, runner
        self.guard, self.fallback = guard, fallback
        self.prefix, self.lease_ttl_s = prefix, lease_ttl_s
        self.tasks: set[asyncio.Task[None]] = set()
        self._batch: asyncio.Future[dict[str, int]] | None = None  # answered by the next push
        self._timer: asyncio.TimerHandle | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.report_crossings = True  # see RedisAdmission.report_crossings

    def keep(self) -> None:
        """Start the keeper if leases are held and it is not running."""
        if self._keeper is None and self.leases.held():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def stop_keeping(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper

    async def _keep(self) -> None:
        """While leases are held: give back idle ones, keep leased slots alive."""
        try:
            while self.leases.held():
                await asyncio.sleep(KEEP_S)
                if self.guard.usable():
                    clock = time.monotonic()
                    if self.leases.release(clock - IDLE_S, clock - self.lease_ttl_s / 3, clock):
                        self.now()
        finally:
            self._keeper = None

    def soon(self) -> None:
        """Push what is queued within PUSH_S (nobody waits on it)."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(PUSH_S, self.now)

    async def settled(
        self, reservation: Reservation | None, offsets: list[int] | None, cost_micro: int
    ) -> list[Crossing]:
        """A settle queued something: without `report_crossings`, push it within PUSH_S and
        return []; else wait for that push and return the crossings of `reservation` (its
        books' spend before the push plus `offsets`, what was queued before it)."""
        if not self.report_crossings:
            self.soon()
            return []
        batch = self._batch
        if batch is None:
            batch = self._batch = asyncio.get_running_loop().create_future()
            self.soon()
        bases = await batch  # the spend of each book before the push
        if reservation is None or offsets is None:
            return []
        return [
            Crossing(s, b, bases[b] + off, bases[b] + off + cost_micro)
            for (s, b), off in zip(reservation.scopes, offsets, strict=True)
            if b in bases
        ]

    def now(self) -> asyncio.Task[None] | None:
        """Send everything settled or given back since the last push, in one script call
        (queued ahead of any call made after this one where the runner can); the task that
        waits for its answer, None if nothing was owed."""
        task, _ = self._push()
        return task

    def ahead(self) -> asyncio.Task[None] | None:
        """`now`, for a call that must come after it: the push's task if the runner could
        not queue it ahead (wait for it before calling), else None."""
        task, queued = self._push()
        return None if queued else task

    def _push(self) -> tuple[asyncio.Task[None] | None, bool]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.leases.dirty():
            return None, True
        rate, books = self.leases.drain()
        batch, self._batch = self._batch, None
        keys, args = push_call(rate, books, self.prefix, self.lease_ttl_s)
        sent = self.runner.submit(PUSH, keys, args)
        if sent is None:
            sent = self.runner.run(PUSH, keys, args)  # sent once the task runs
            queued = False
        else:
            queued = True
        task = asyncio.get_running_loop().create_task(self._answered(rate, books, batch, sent))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task, queued

    async def _answered(
        self,
        rate: list[RatePush],
        books: list[BookPush],
        batch: asyncio.Future[dict[str, int]] | None,
        sent: Awaitable[Any],
    ) -> None:
        """Wait for a push's answer: each book's spend before it goes to the settlements
        waiting on `batch` (for their crossings)."""
        bases: dict[str, int] = {}
        try:
            spent = parse_push(await sent).spent_micro
            bases = {b.bucket: a - b.spent for b, a in zip(books, spent, strict=True)}
        except (RedisError, OSError) as e:
            self.guard.failed("settle", e)
            book = self.fallback.spent  # the ledger has the spend too
            for b in books:
                book[b.bucket] = book.get(b.bucket, 0) + b.spent
        finally:
            self.leases.pushed(rate)
            if batch is not None and not batch.done():
                batch.set_result(bases)
