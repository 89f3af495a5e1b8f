"""Rate limits and budgets shared by every replica through Redis, spent mostly from leases.

Admission checks every rate-limit bucket of the request (key, team, model) and every budget
book (key, team, org), then takes from all of them, atomically in one Lua script, so a
request refused by any of them takes nothing (see admission.py). The same call takes leases
(leases.py): capacity this replica then spends locally, so a request whose every scope and
book is covered by leases is admitted with no Redis call at all; a top-up is asked for in
the background when a lease runs low, and idle leases go back after `IDLE_S` and at `aclose`.

Settlement (the token correction, the concurrency slot, the real cost in place of the
reserved worst case) is applied to the leases where it can be; what must reach Redis (the
real spend, a token debt, slots taken in Redis, capacity given back) is pushed in one script
call per `PUSH_S` (10 ms) for all the requests settled meanwhile, or with the next admission
call. `settle` returns once its push is answered, with exact budget crossings; with
`report_crossings` off (no budget alerts read them) it only queues its push.

A covered request costs about what an in-memory admission does: the leases of each list of
scopes are looked up once (`leases.Cover`, kept by the list's identity: the limits stage
shares one list per key), book names are worked out once a UTC day, and the rate-limit
headers' strings are reused while their values do not change.

A scope's requests/min and tokens/min buckets share one string key {level, stamp} x 2,
refilled from Redis' own clock (no replica clock skew), that expires after two idle windows.
Concurrency is a sorted set scored by start time: request ids, swept after `PARALLEL_TTL_S`,
and leased slots, scored so that they are swept `lease_ttl_s` after their holder last
refreshed them (a replica that died gives its leased slots back within that time). Budget
books are hashes {spent, reserved}, one per scope and window (35-day TTL, set when the book
is created); `reserved` includes the leases.

While Redis is unreachable the guard switches to this replica's in-memory books
(`fallback`), so Redis is never a single point of failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from slipstream.store.records import utcnow
from slipstream.tenancy.admission import Admitted, LocalAdmission
from slipstream.tenancy.budgets import (
    BucketNames,
    BudgetPlan,
    BudgetScope,
    Crossing,
    MemoryBudgets,
    Refusal,
    Reservation,
    bucket_name,
    window_end,
)
from slipstream.tenancy.leases import IDLE_S, BookPush, Cover, Leases, RateAsk, RatePush
from slipstream.tenancy.ratelimit import Decision, MemoryLimiter, Scope, rate_headers
from slipstream.tenancy.redis_guard import RedisGuard
from slipstream.tenancy.redis_scripts import ADMIT, PARALLEL_TTL_S, PUSH, SEED, lua
from slipstream.tenancy.redis_wire import RedisWire

RATE_PREFIX = "slipstream:rl:"
BUDGET_PREFIX = "slipstream:budget:"
LEASE_TTL_S = 30.0  # leased slots of a replica that stopped refreshing them are swept after
PUSH_S = 0.01  # settlements wait at most this long to share one push call
KEEP_S = 0.25  # how often idle leases are looked for

MAX_COVERS = 4096

_WHAT = {1: "requests per minute", 2: "tokens per minute", 3: "concurrent requests"}
_NO_BOOKS: list[tuple[BudgetScope, str]] = []  # of a request without a budget (never changed)


def _arg(v: int | None) -> int:
    return -1 if v is None else v


def _keys(scopes: Sequence[Scope]) -> list[str]:
    keys = []
    for s in scopes:
        name = RATE_PREFIX + s.name
        keys += [name + ":b", name + ":p"]
    return keys


class RedisAdmission:
    def __init__(
        self,
        client: aioredis.Redis,
        guard: RedisGuard | None = None,
        now: Callable[[], dt.datetime] = utcnow,
        lean: bool = True,
        lease_ttl_s: float = LEASE_TTL_S,
    ) -> None:
        self.now = now
        self.guard = guard or RedisGuard()
        # While Redis is unreachable (budgets seeded like Redis).
        self.fallback = LocalAdmission(MemoryLimiter(), MemoryBudgets(now))
        self._admit = client.register_script(lua(ADMIT))
        self._push_script = client.register_script(lua(PUSH))
        self._seed = client.register_script(lua(SEED))
        # Our own pipelined connection for the scripts (redis_wire.py: ~4x less client CPU
        # per call than redis-py; `aclose` closes it); None for connections only redis-py
        # speaks (e.g. TLS), or without `lean`.
        self.wire = RedisWire.for_client(client) if lean else None
        self.leases = Leases()
        self.lease_ttl_s = lease_ttl_s
        self.prefix = f"lease:{uuid.uuid4().hex[:12]}:"  # this replica's slot members
        # Requests admitted through Redis or leases, not settled yet: (slot leased, when, scopes).
        self._admitted: dict[str, tuple[bool, float, Sequence[Scope]]] = {}
        self._batch: asyncio.Future[dict[str, int]] | None = None  # answered by the next push
        self._timer: asyncio.TimerHandle | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The leases of each list of scopes (by identity; see leases.Cover), and the names of
        # budget books, both for the UTC day [_day_start, _day_end) (epoch seconds of `now`).
        self._covers: dict[int, Cover] = {}
        self._names = BucketNames()
        self._day_start = self._day_end = 0.0
        self._wall: Callable[[], float] = (
            time.time if now is utcnow else lambda: self.now().timestamp()
        )
        # False: nobody reads `settle`'s budget crossings (no alerts are configured), so a
        # settle only queues its push, and returns without waiting for it.
        self.report_crossings = True

    async def _run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[int | str]
    ) -> Any:
        if self.wire is not None:
            text = cast(str, script.script)  # ours: always str
            return await self.wire.evalsha(script.sha, text, keys, args)
        return await script(keys=keys, args=args)

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
            c = self._covers.get(id(scopes))
            if (
                c is None
                or c.scopes is not scopes
                or c.budgets is not budgets
                or c.gen != self.leases.gen
                or not self._day_start <= self._wall() < self._day_end
            ):
                named = self._named(budgets)
                c = self._cover(scopes, budgets, named)
            else:
                named = c.named
            if c is not None:
                low = self.leases.take(c, tokens, worst, clock)
                if low is not None:
                    return self._local(c, tokens, request_id, plan, worst, clock, low)
            try:
                return await self._admit_shared(scopes, tokens, request_id, named, plan)
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
        scopes: Sequence[Scope],
        budgets: list[BudgetScope] | None,
        named: Sequence[tuple[BudgetScope, str]],
    ) -> Cover | None:
        """The leases covering these scopes and books `named` (kept for the next request of
        the same lists), or None if one is not held."""
        c = self.leases.cover(scopes, budgets, named)
        if c is not None:
            if len(self._covers) >= MAX_COVERS:  # lists replaced by refreshes: start over
                self._covers.clear()
            self._covers[id(scopes)] = c
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
        if scopes:
            self._admitted[request_id] = (True, clock, scopes)
            d = Decision(True, headers=c.headers(clock))
        else:
            d = Decision(True)
        return Admitted(d, None if plan is None else Reservation(c.named, worst))

    def _call(
        self,
        scopes: Sequence[Scope],
        tokens: int,
        request_id: str,
        named: Sequence[tuple[BudgetScope, str]],
        worst: int,
        asks: tuple[list[RateAsk], list[int]],
    ) -> tuple[list[str], list[int | str]]:
        take = 1 if request_id else 0
        keys = _keys(scopes)
        args: list[int | str] = [tokens, request_id, len(scopes), worst, take, self.prefix]
        args.append(str(self.lease_ttl_s))
        for s, a in zip(scopes, asks[0], strict=True):
            args += [_arg(s.rpm), _arg(s.tpm), _arg(s.max_parallel)]
            args += [a.requests, a.tokens, a.slots, a.slots_from]
        for (bs, b), m in zip(named, asks[1], strict=True):
            keys.append(BUDGET_PREFIX + b)
            args += [bs.limit_micro, m]
        return keys, args

    def _grant(
        self,
        scopes: Sequence[Scope],
        named: Sequence[tuple[BudgetScope, str]],
        asks: tuple[list[RateAsk], list[int]],
        reply: Sequence[Any] | None,
        clock: float,
    ) -> None:
        """Apply what a script call granted (None: it failed or refused: nothing)."""
        if reply is None:
            self.leases.granted(scopes, named, asks, None, None, clock)
            return
        n = len(scopes)
        rates = [
            (float(reply[i]), float(reply[i + 1]), int(reply[i + 2]), int(reply[i + 3]),
             int(reply[i + 4]))
            for i in range(4, 4 + n * 5, 5)
        ]  # fmt: skip
        books = [int(reply[j]) for j in range(5 + n * 5, len(reply), 2)]
        self.leases.granted(scopes, named, asks, rates, books, clock)
        if self._keeper is None and self.leases.held():
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _admit_shared(
        self,
        scopes: Sequence[Scope],
        tokens: int,
        request_id: str,
        named: Sequence[tuple[BudgetScope, str]],
        plan: BudgetPlan | None,
    ) -> Admitted:
        worst = 0 if plan is None else plan.worst_micro
        asks = self.leases.ask(scopes, tokens, named, worst)
        keys, args = self._call(scopes, tokens, request_id, named, worst, asks)
        pushing = self._push_now()  # settled before this call: Redis must see it first
        if pushing is not None and self.wire is None:
            await pushing  # redis-py's pool does not keep the order of calls
        try:
            reply = await self._run(self._admit, keys, args)
        except BaseException:
            self._grant(scopes, named, asks, None, time.monotonic())
            raise
        clock = time.monotonic()
        if int(reply[0]):
            self._grant(scopes, named, asks, reply, clock)
            d = Decision(True)
            if scopes:
                self._admitted[request_id] = (False, clock, scopes)
                d.headers = self.leases.headers(scopes[0], clock)
            return Admitted(d, None if plan is None else Reservation(named, worst))
        self._grant(scopes, named, asks, None, clock)
        # Leases granted to this replica's other calls meanwhile are ours to spend.
        c = self._cover(scopes, None if plan is None else plan.scopes, named)
        if c is not None:
            low = self.leases.take(c, tokens, worst, clock)
            if low is not None:
                return self._local(c, tokens, request_id, plan, worst, clock, low)
        _, idx, why, wait, rl, tl, spent = reply
        why = int(why)
        if why == 4:  # the rate limits had room, a budget had not
            refused = named[int(idx)][0]
            now = self.now()
            return Admitted(budget=Refusal(refused, int(spent), window_end(refused.window, now)))
        scope = scopes[int(idx)]
        d = self._headers(scope, rl, tl)
        d.allowed = False
        d.retry_after_s = max(float(wait), 0.001)
        d.reason = f"{_WHAT[why]} limit of {scope.name}"
        return Admitted(d)

    async def _top_up(
        self,
        scopes: Sequence[Scope],
        tokens: int,
        named: Sequence[tuple[BudgetScope, str]],
        worst: int,
        asks: tuple[list[RateAsk], list[int]],
    ) -> None:
        """Ask for more lease without admitting anything (no request waits on it)."""
        keys, args = self._call(scopes, tokens, "", named, worst, asks)
        try:
            reply = await self._run(self._admit, keys, args)
        except (RedisError, OSError) as e:
            self._grant(scopes, named, asks, None, time.monotonic())
            self.guard.failed("lease top-up", e)
            return
        self._grant(scopes, named, asks, reply, time.monotonic())

    @staticmethod
    def _headers(scope: Scope | None, rl: bytes | str, tl: bytes | str) -> Decision:
        if scope is None:
            return Decision(True)
        r_left, t_left = float(rl), float(tl)
        return Decision(
            True,
            headers=rate_headers(
                scope,
                r_left,
                t_left,
                (scope.rpm - r_left) * 60 / scope.rpm if scope.rpm else 0,
                (scope.tpm - t_left) * 60 / scope.tpm if scope.tpm else 0,
            ),
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
        entry = self._admitted.pop(request_id, None) if scopes else None
        c = self._covers.get(id(scopes))
        if (  # admitted from (or through Redis into) the leases of `c`: no lookups
            c is not None
            and c.scopes is scopes
            and c.gen == self.leases.gen
            and (not scopes if entry is None else entry[0] or not c.par)
            and (
                reservation is None
                or (reservation.scopes is c.named and not reservation.settled and c.books)
            )
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
            if not self.report_crossings:  # the push goes within PUSH_S; nobody waits on it
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(PUSH_S, self._push_now)
                return []
            return await self._pushed_crossings(reservation, offsets, cost_micro)
        out: list[Crossing] = []
        if scopes and entry is None:  # admitted by the fallback books
            await self.fallback.limiter.settle(scopes, estimated, actual, request_id)
        if reservation is not None and reservation.local:
            out = await self.fallback.budgets.settle(reservation, cost_micro)
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
            entry is not None and entry[0],
            reservation,
            cost_micro,
        )
        if not queued:
            return out
        if not self.report_crossings:
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(PUSH_S, self._push_now)
            return out
        crossings = await self._pushed_crossings(reservation, offsets, cost_micro)
        return out if reservation is None else crossings

    async def _pushed_crossings(
        self, reservation: Reservation | None, offsets: list[int] | None, cost_micro: int
    ) -> list[Crossing]:
        """Wait for the push of what was just queued: the crossings of `reservation` (its
        books' spend before the push plus `offsets`, what was queued before it)."""
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            if self._timer is None:
                self._timer = loop.call_later(PUSH_S, self._push_now)
        bases = await batch  # the spend of each book before the push
        if reservation is None or offsets is None:
            return []
        return [
            Crossing(s, b, bases[b] + off, bases[b] + off + cost_micro)
            for (s, b), off in zip(reservation.scopes, offsets, strict=True)
            if b in bases
        ]

    def _push_now(self) -> asyncio.Task[None] | None:
        """Send everything settled or given back since the last push, in one script call,
        ahead of any call made after this one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.leases.dirty():
            return None
        rate, books = self.leases.drain()
        batch, self._batch = self._batch, None
        keys = _keys([p.scope for p in rate])
        args: list[int | str] = [len(rate), self.prefix, str(self.lease_ttl_s)]
        for p in rate:
            args += [_arg(p.scope.rpm), _arg(p.scope.tpm), p.requests, p.tokens]
            args += [p.slots_from, p.slots_to, p.refresh, len(p.ids), *p.ids]
        for b in books:
            keys.append(BUDGET_PREFIX + b.bucket)
            args += [b.spent, b.reserved]
        sent = None
        if self.wire is not None:
            sent = self.wire.submit(self._push_script.sha, keys, args)
        task = asyncio.get_running_loop().create_task(
            self._pushed(rate, books, batch, sent, keys, args)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pushed(
        self,
        rate: list[RatePush],
        books: list[BookPush],
        batch: asyncio.Future[dict[str, int]] | None,
        sent: asyncio.Future[Any] | None,
        keys: list[str],
        args: list[int | str],
    ) -> None:
        """Wait for a push's answer: each book's spend before it goes to the settlements
        waiting on `batch` (for their crossings)."""
        bases: dict[str, int] = {}
        try:
            try:
                after = await sent if sent is not None else None
            except ResponseError as e:
                if not str(e).startswith("NOSCRIPT"):
                    raise
                after = None
            if after is None:
                after = await self._run(self._push_script, keys, args)
            bases = {b.bucket: int(a) - b.spent for b, a in zip(books, after, strict=True)}
        except (RedisError, OSError) as e:
            self.guard.failed("settle", e)
            book = self.fallback.budgets.spent  # the ledger has the spend too
            for b in books:
                book[b.bucket] = book.get(b.bucket, 0) + b.spent
        finally:
            self.leases.pushed(rate)
            if batch is not None and not batch.done():
                batch.set_result(bases)

    async def _keep(self) -> None:
        """While leases are held: give back idle ones, keep leased slots alive."""
        try:
            while self.leases.held():
                await asyncio.sleep(KEEP_S)
                if self.guard.usable():
                    clock = time.monotonic()
                    if self.leases.release(clock - IDLE_S, clock - self.lease_ttl_s / 3, clock):
                        self._push_now()
        finally:
            self._keeper = None

    async def aclose(self) -> None:
        """Give every lease back and push what is owed, then close the connection."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.leases.release(math.inf, -math.inf, time.monotonic())
        pushing = self._push_now()
        if pushing is not None:
            await pushing
        if self.wire is not None:
            await self.wire.aclose()

    async def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        await self.fallback.seed(scope, spent_micro)
        if self.guard.usable():
            key = BUDGET_PREFIX + bucket_name(scope, self.now())
            try:
                await self._run(self._seed, [key], [spent_micro])
            except (RedisError, OSError) as e:
                self.guard.failed("budget seeding", e)

    def prune(self) -> None:
        self.fallback.prune()
        self.leases.prune((self.now() - dt.timedelta(days=32)).date().isoformat())
        stale = time.monotonic() - PARALLEL_TTL_S
        for rid, (leased, at, scopes) in list(self._admitted.items()):
            if at < stale:  # never settled: stop holding its slot
                del self._admitted[rid]
                if leased:
                    self.leases.forget_slot(scopes)
