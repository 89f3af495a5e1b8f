"""Rate limits and budgets shared by every replica through Redis, spent mostly from leases.

Admission checks every rate-limit bucket of the request (key, team, model) and every budget
book (key, team, org), then takes from all of them, atomically in one Lua script, so a
request refused by any of them takes nothing (see tenancy/admission.py). The same call takes leases
(leases.py): capacity this replica then spends locally, so a request whose every scope and
book is covered by leases is admitted with no Redis call at all; a top-up is asked for in
the background when a lease runs low, and idle leases go back after `IDLE_S` and at `aclose`.

Settlement (the token correction, the concurrency slot, the real cost in place of the
reserved worst case) is applied to the leases where it can be; what must reach Redis (the
real spend, a token debt, slots taken in Redis, capacity given back) is pushed in one script
call per `PUSH_S` (push.py). `settle` returns once its push is answered, with exact
budget crossings; with `report_crossings` off (no budget alerts read them) it only queues it.

A covered request costs about what an in-memory admission does: its leases are found once
per set of scope values (`Cover`, kept by `cover_key`) and book names once a UTC day, and
its settlement finds them again through the request id. The Redis data layout is described
in scripts.py; replies.py reads the scripts' answers.

While Redis is unreachable the guard switches to this replica's in-memory books
(`fallback`), so Redis is never a single point of failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from slipstream.store.records import utcnow
from slipstream.tenancy.admission import (
    Admitted,
    BudgetPlan,
    BudgetScope,
    Crossing,
    Decision,
    Refusal,
    Reservation,
    Scope,
    rate_headers,
)
from slipstream.tenancy.books import BucketNames, bucket_name, window_end
from slipstream.tenancy.local.admission import LocalAdmission
from slipstream.tenancy.local.budgets import MemoryBudgets
from slipstream.tenancy.local.ratelimit import MemoryLimiter
from slipstream.tenancy.shared.cover import Cover, cover_key
from slipstream.tenancy.shared.guard import RedisGuard
from slipstream.tenancy.shared.leases import Leases
from slipstream.tenancy.shared.push import Pusher
from slipstream.tenancy.shared.records import RateAsk
from slipstream.tenancy.shared.replies import Granted, parse_admit
from slipstream.tenancy.shared.runner import runner_for
from slipstream.tenancy.shared.scripts import (
    ADMIT,
    BUDGET_PREFIX,
    PARALLEL_TTL_S,
    SEED,
    admit_call,
)

LEASE_TTL_S = 30.0  # leased slots of a replica that stopped refreshing them are swept after

MAX_COVERS = 4096

_NO_BOOKS: list[tuple[BudgetScope, str]] = []  # of a request without a budget (never changed)


@dataclass(slots=True)
class InFlight:
    """A request admitted through Redis or from leases, not settled yet."""

    leased_slot: bool  # its concurrency slots came from leases (else: taken in Redis by id)
    at: float  # when it was admitted (monotonic)
    scopes: Sequence[Scope]
    cover: Cover | None  # the leases it settles into, if they covered it when admitted


class RedisAdmission:
    def __init__(
        self,
        client: aioredis.Redis,
        guard: RedisGuard | None = None,
        now: Callable[[], dt.datetime] = utcnow,
        lease_ttl_s: float = LEASE_TTL_S,
    ) -> None:
        self.now = now
        self.guard = guard or RedisGuard()
        # While Redis is unreachable (budgets seeded like Redis).
        self.fallback = LocalAdmission(MemoryLimiter(), MemoryBudgets(now))
        # How the scripts reach `client`'s server (runner.py); `aclose` closes it.
        self.runner = runner_for(client)
        self.leases = Leases()
        self.lease_ttl_s = lease_ttl_s
        self.prefix = f"lease:{uuid.uuid4().hex[:12]}:"  # this replica's slot members
        self.pusher = Pusher(
            self.leases,
            self.runner,
            self.guard,
            self.fallback.budgets,
            self.prefix,
            lease_ttl_s,
        )
        # Requests admitted through Redis or leases, not settled yet, by request id.
        self._admitted: dict[str, InFlight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The leases of each list of rate and budget scopes (by their values, `cover_key`;
        # see cover.py), and the names of budget books, both for the UTC day
        # [_day_start, _day_end) (epoch seconds of `now`).
        self._covers: dict[tuple[Scope | BudgetScope, ...], Cover] = {}
        self._names = BucketNames()
        self._day_start = self._day_end = 0.0
        self._wall: Callable[[], float] = (
            time.time if now is utcnow else lambda: self.now().timestamp()
        )

    @property
    def report_crossings(self) -> bool:
        """False: nobody reads `settle`'s budget crossings (no alerts are configured), so a
        settle only queues its push and returns without waiting for it."""
        return self.pusher.report_crossings

    @report_crossings.setter
    def report_crossings(self, value: bool) -> None:
        self.pusher.report_crossings = value

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def admit(
        self, scopes: Sequence[Scope], tokens: int, request_id: str, plan: BudgetPlan | None
    ) -> Admitted:
        budgets = None if plan is None else plan.scopes
        if not scopes and not budgets:
            return Admitted()
        if self.guard.usable():
            worst = 0 if plan is None else plan.worst_micro
            clock = time.monotonic()
            key = cover_key(scopes, budgets)
            c = self._covers.get(key)
            if (
                c is None
                or c.gen != self.leases.gen
                or not self._day_start <= self._wall() < self._day_end
            ):
                named = self._named(budgets)
                c = self._cover(key, scopes, named)
            else:
                named = c.named
            if c is not None:
                low = self.leases.take(c, tokens, worst, clock)
                if low is not None:
                    return self._local(c, tokens, request_id, plan, worst, clock, low)
            try:
                return await self._admit_shared(key, scopes, tokens, request_id, named, plan)
            except (RedisError, OSError) as e:
                self.guard.failed("admission", e)
        a = await self.fallback.admit(scopes, tokens, request_id, plan)
        if isinstance(a.budget, Reservation):
            a.budget.local = True
        return a

    def _named(self, budgets: list[BudgetScope] | None) -> Sequence[tuple[BudgetScope, str]]:
        """The books (scope, name incl. the window) of a plan's scopes, as of now; shared by
        the requests of a list of scopes: read-only."""
        now = self.now()
        ts = now.timestamp()
        if not self._day_start <= ts < self._day_end:  # a new UTC day: names may change
            self._day_start = ts - ts % 86400
            self._day_end = self._day_start + 86400
            self._covers.clear()
        return _NO_BOOKS if budgets is None else self._names.of(budgets, now)

    def _cover(
        self,
        key: tuple[Scope | BudgetScope, ...],
        scopes: Sequence[Scope],
        named: Sequence[tuple[BudgetScope, str]],
    ) -> Cover | None:
        """The leases covering these scopes and books `named` (kept under `key` for the next
        request with the same scopes), or None if one is not held."""
        c = self.leases.cover(scopes, named)
        if c is not None:
            if len(self._covers) >= MAX_COVERS:  # refreshes brought other limits: start over
                self._covers.clear()
            self._covers[key] = c
        return c

    def _local(
        self,
        c: Cover,
        tokens: int,
        request_id: str,
        plan: BudgetPlan | None,
        worst: int,
        clock: float,
        low: bool,
    ) -> Admitted:
        """Admitted from leases (taken already); more is asked for if one ran `low`."""
        scopes = c.scopes
        if low:
            named = c.named
            asks = self.leases.ask(scopes, tokens, named, worst)
            if any(a.requests or a.tokens or a.slots for a in asks[0]) or any(asks[1]):
                self._spawn(self._top_up(scopes, tokens, named, worst, asks))
            else:
                self._grant(scopes, named, asks, None, clock)
        self._admitted[request_id] = InFlight(True, clock, scopes, c)
        d = Decision(True, headers=c.headers(clock)) if scopes else Decision(True)
        return Admitted(d, None if plan is None else Reservation(c.named, worst))

    def _grant(
        self,
        scopes: Sequence[Scope],
        named: Sequence[tuple[BudgetScope, str]],
        asks: tuple[list[RateAsk], list[int]],
        reply: Granted | None,
        clock: float,
    ) -> None:
        """Apply what a script call granted (None: it failed or refused: nothing)."""
        self.leases.granted(scopes, named, asks, reply, clock)
        if reply is not None:
            self.pusher.keep()

    async def _admit_shared(
        self,
        key: tuple[Scope | BudgetScope, ...],
        scopes: Sequence[Scope],
        tokens: int,
        request_id: str,
        named: Sequence[tuple[BudgetScope, str]],
        plan: BudgetPlan | None,
    ) -> Admitted:
        worst = 0 if plan is None else plan.worst_micro
        asks = self.leases.ask(scopes, tokens, named, worst)
        keys, args = admit_call(
            scopes, tokens, request_id, named, worst, asks, self.prefix, self.lease_ttl_s
        )
        pushing = self.pusher.ahead()  # settled before this call: Redis must see it first
        if pushing is not None:
            await pushing  # the runner could not queue it ahead of this call
        try:
            reply = parse_admit(await self.runner.run(ADMIT, keys, args), len(scopes))
        except BaseException:
            self._grant(scopes, named, asks, None, time.monotonic())
            raise
        clock = time.monotonic()
        if isinstance(reply, Granted):
            self._grant(scopes, named, asks, reply, clock)
            # Settled into the leases now held, if they cover it (its slots are in Redis).
            c = self._covers.get(key)
            if c is None or c.gen != self.leases.gen:
                c = self._cover(key, scopes, named)
            self._admitted[request_id] = InFlight(False, clock, scopes, c)
            d = Decision(True)
            if scopes:
                d.headers = self.leases.headers(scopes[0], clock)
            return Admitted(d, None if plan is None else Reservation(named, worst))
        self._grant(scopes, named, asks, None, clock)
        # Leases granted to this replica's other calls meanwhile are ours to spend.
        c = self._cover(key, scopes, named)
        if c is not None:
            low = self.leases.take(c, tokens, worst, clock)
            if low is not None:
                return self._local(c, tokens, request_id, plan, worst, clock, low)
        if reply.by_budget:  # the rate limits had room, a budget had not
            refused = named[reply.index][0]
            reset = window_end(refused.window, self.now())
            return Admitted(budget=Refusal(refused, reply.spent_micro, reset))
        scope = scopes[reply.index]
        reason = f"{reply.limit} limit of {scope.name}"
        headers = rate_headers(scope, reply.requests_left, reply.tokens_left)
        return Admitted(Decision(False, max(reply.wait_s, 0.001), reason, headers))

    async def _top_up(
        self,
        scopes: Sequence[Scope],
        tokens: int,
        named: Sequence[tuple[BudgetScope, str]],
        worst: int,
        asks: tuple[list[RateAsk], list[int]],
    ) -> None:
        """Ask for more lease without admitting anything (no request waits on it)."""
        keys, args = admit_call(
            scopes, tokens, "", named, worst, asks, self.prefix, self.lease_ttl_s
        )
        try:
            reply = parse_admit(await self.runner.run(ADMIT, keys, args), len(scopes))
        except (RedisError, OSError) as e:
            self._grant(scopes, named, asks, None, time.monotonic())
            self.guard.failed("lease top-up", e)
            return
        # Asking for nothing to be admitted, it cannot be refused.
        self._grant(
            scopes, named, asks, reply if isinstance(reply, Granted) else None, time.monotonic()
        )

    async def settle(
        self,
        scopes: Sequence[Scope],
        estimated: int,
        actual: int,
        request_id: str,
        reservation: Reservation | None,
        cost_micro: int,
    ) -> list[Crossing]:
        entry = self._admitted.pop(request_id, None)
        c = None if entry is None else entry.cover
        if (  # admitted under the leases of `c`, still current: settled there, no lookups
            c is not None
            and c.gen == self.leases.gen
            and (entry.leased_slot or not c.par)
            and (reservation is None or (not reservation.settled and c.books))
        ):
            offsets: list[int] | None = None
            if reservation is not None:
                reservation.settled = True
                if self.report_crossings:
                    offsets = []
            if not self.leases.settle_covered(
                c, estimated - actual, reservation, cost_micro, offsets
            ):
                return []
            return await self.pusher.settled(reservation, offsets, cost_micro)
        out: list[Crossing] = []
        if scopes and entry is None:  # admitted by the fallback books
            self.fallback.limiter.give_back(scopes, estimated, actual)
        if reservation is not None and reservation.local:
            out = self.fallback.budgets.close(reservation, cost_micro)
            reservation = None
        if reservation is not None and (reservation.settled or not reservation.scopes):
            reservation = None
        if reservation is None and entry is None:
            return out
        if reservation is not None:
            reservation.settled = True
        queued, offsets = self.leases.settle(
            scopes if entry is not None else (),
            estimated,
            actual,
            request_id,
            entry is not None and entry.leased_slot,
            reservation,
            cost_micro,
        )
        if not queued:
            return out
        crossings = await self.pusher.settled(
            reservation, offsets if self.report_crossings else None, cost_micro
        )
        return out if reservation is None else crossings

    async def aclose(self) -> None:
        """Give every lease back and push what is owed, then close the connection."""
        await self.pusher.stop_keeping()
        pending = [*self._tasks, *self.pusher.tasks]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.leases.release(math.inf, -math.inf, time.monotonic())
        pushing = self.pusher.now()
        if pushing is not None:
            await pushing
        await self.runner.aclose()

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        await self.fallback.seed(scope, spent_micro)
        if self.guard.usable():
            key = BUDGET_PREFIX + bucket_name(scope, self.now())
            try:
                await self.runner.run(SEED, [key], [spent_micro])
            except (RedisError, OSError) as e:
                self.guard.failed("budget seeding", e)

    def prune(self) -> None:
        self.fallback.prune()
        self.leases.prune((self.now() - dt.timedelta(days=32)).date().isoformat())
        stale = time.monotonic() - PARALLEL_TTL_S
        for rid, entry in list(self._admitted.items()):
            if entry.at < stale:  # never settled: stop holding its slot
                del self._admitted[rid]
                if entry.leased_slot:
                    self.leases.forget_slot(entry.scopes)
