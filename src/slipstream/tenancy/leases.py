"""Leases: shared rate-limit and budget capacity that this replica took from Redis in advance,
so that most requests are admitted without a round trip.

A lease is taken atomically by the admission script (redis_admission.py) from the shared
bucket, slot set or budget book, exactly like a request's own take, so spending it here can
never admit more than the shared limit allows. A request is admitted from leases only when
every one of its scopes and books is covered; otherwise the script decides (all or nothing,
as without leases) and tops the leases up in the same call.

Sizing keeps behaviour near a limit exact and stranded capacity small: a replica holds at
most 1/64 of a limit and at most 64 requests' worth (`hold`), nothing at all for limits
under 64 requests' worth of it, and the script grants nothing once less than a quarter of
the limit is left. So capacity stranded in other replicas' unused leases is at most
`hold` per replica, and only until they use it or give it back after `IDLE_S`.

This module keeps the local books and what must still reach Redis (`push_*`: settlements,
given-back capacity); it does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from slipstream.tenancy.budgets import BudgetScope, Reservation
from slipstream.tenancy.ratelimit import WINDOW_S, Scope, rate_headers

LEASE_SHARE = 64  # a lease holds at most 1/LEASE_SHARE of a limit ...
LEASE_REQUESTS = 64  # ... and at most this many requests' worth
IDLE_S = 1.0  # leases not used for this long go back to Redis


def hold(capacity: int | None, unit: int) -> int:
    """How much of a limit this replica may hold (0: always ask Redis), for requests that
    take `unit` each."""
    if capacity is None:
        return 0
    unit = max(unit, 1)
    h = min(capacity // LEASE_SHARE, LEASE_REQUESTS * unit)
    return h if h >= unit else 0


@dataclass
class RateLease:
    """What this replica holds of one rate scope: requests and tokens taken from its shared
    buckets, and concurrency slots (members `<prefix>0` .. `<prefix>{slots-1}` of its slot
    set, refreshed while held so that a dead replica's slots expire)."""

    scope: Scope  # its limits, as last seen
    requests: int = 0
    tokens: int = 0
    slots: int = 0
    slots_used: int = 0  # by requests admitted here and not settled yet
    hold_requests: int = 0  # what it may hold (`hold`, worked out when asking for more)
    hold_tokens: int = 0
    hold_slots: int = 0
    asked_requests: int = 0  # asked for by script calls in flight
    asked_tokens: int = 0
    slots_busy: bool = False  # a call adding or removing slot members is in flight
    level_requests: float = 0.0  # the shared levels Redis last reported (after our take)
    level_tokens: float = 0.0
    seen_at: float = 0.0
    used_at: float = 0.0
    refreshed_at: float = 0.0
    # still to reach Redis: requests and tokens given back (tokens < 0: usage debt), slot
    # members [push_slots_from, push_slots_to) to remove, slots taken by request id to free
    push_requests: int = 0
    push_tokens: int = 0
    push_slots_from: int = 0
    push_slots_to: int = 0
    push_refresh: bool = False
    push_ids: list[str] = field(default_factory=list)


@dataclass
class BookLease:
    """Micro-dollars this replica reserved in one shared budget book beyond its requests'
    own reservations; and the settled spend still to reach Redis."""

    limit: int  # the book's limit when leased
    micro: int = 0
    hold: int = 0
    asked: int = 0
    used_at: float = 0.0
    push_spent: int = 0
    push_reserved: int = 0


@dataclass
class RateAsk:
    """One scope's part of a script call: what to ask for, and where new slot members start."""

    requests: int
    tokens: int
    slots: int
    slots_from: int


@dataclass
class RatePush:
    scope: Scope
    requests: int
    tokens: int
    slots_from: int
    slots_to: int
    refresh: int  # members 0 .. refresh-1 to keep alive
    ids: list[str]


@dataclass
class BookPush:
    bucket: str
    spent: int
    reserved: int


class Cover:
    """The leases that the requests of one list of rate scopes and one list of budget books
    need (`Leases.cover`), found once: a covered request is then admitted and settled with
    no lookups. The limits stage shares one list of each among all requests of a key, so
    covers are kept by the lists' identity (holding them). Current while the leases' `gen`
    is unchanged."""

    __slots__ = (
        "book_names", "books", "budgets", "gen", "head", "named", "par", "rate", "req",
        "scopes", "shown", "tok",
    )  # fmt: skip

    def __init__(
        self,
        scopes: Sequence[Scope],
        budgets: Sequence[BudgetScope] | None,
        named: Sequence[tuple[BudgetScope, str]],
        gen: int,
        rate: list[RateLease],
        books: list[tuple[str, BookLease]],
    ) -> None:
        self.scopes, self.budgets, self.named, self.gen = scopes, budgets, named, gen
        self.rate = tuple(rate)
        self.req = tuple(lease for s, lease in zip(scopes, rate, strict=True) if s.rpm is not None)
        self.tok = tuple(lease for s, lease in zip(scopes, rate, strict=True) if s.tpm is not None)
        self.par = tuple(
            lease for s, lease in zip(scopes, rate, strict=True) if s.max_parallel is not None
        )
        self.book_names = tuple(books)
        self.books = tuple(book for _, book in books)
        self.head = rate[0] if rate else None
        # The last headers shown, by (requests left, tokens left): they rarely change for a
        # key far from its limits (the level is capped at the limit).
        self.shown: tuple[int, int, dict[str, str]] = (-1, -1, {})

    def headers(self, now: float) -> dict[str, str]:
        """`Leases.headers` of the first scope (there must be one)."""
        lease, scope = cast(RateLease, self.head), self.scopes[0]
        elapsed = now - lease.seen_at
        r = t = 0.0
        if rpm := scope.rpm:
            r = lease.level_requests + elapsed * rpm / WINDOW_S
            r = (r if r < rpm else rpm) + lease.requests
            r = 0.0 if r < 0.0 else (r if r < rpm else rpm)
        if tpm := scope.tpm:
            t = lease.level_tokens + elapsed * tpm / WINDOW_S
            t = (t if t < tpm else tpm) + lease.tokens
            t = 0.0 if t < 0.0 else (t if t < tpm else tpm)
        ri, ti = int(r), int(t)
        shown = self.shown
        if shown[0] != ri or shown[1] != ti:
            shown = self.shown = (ri, ti, rate_headers(scope, r, t, 0, 0, resets=False))
        return shown[2].copy()


class Leases:
    """This replica's leases, keyed by scope name and budget book (bucket) name."""

    def __init__(self) -> None:
        self.rate: dict[str, RateLease] = {}
        self.books: dict[str, BookLease] = {}
        self._dirty_rate: set[str] = set()
        self._dirty_books: set[str] = set()
        # Changed whenever a lease is forgotten or its limits change: a `Cover` holding the
        # lease objects is current only while this is what it was made under.
        self.gen = 0

    def cover(
        self,
        scopes: Sequence[Scope],
        budgets: Sequence[BudgetScope] | None,
        named: Sequence[tuple[BudgetScope, str]],
    ) -> Cover | None:
        """The leases of these scopes and books, if this replica holds one for each under the
        same limits (else None: a request of theirs must ask Redis)."""
        rate = []
        for s in scopes:
            lease = self.rate.get(s.name)
            if lease is None or (lease.scope is not s and lease.scope != s):  # limits changed
                return None
            rate.append(lease)
        books = []
        for bs, b in named:
            book = self.books.get(b)
            if book is None or book.limit != bs.limit_micro:
                return None
            books.append((b, book))
        return Cover(scopes, budgets, named, self.gen, rate, books)

    def take(self, c: Cover, tokens: int, worst: int, now: float) -> bool | None:
        """Admit from the leases of `c` (current: `c.gen == gen`) if they cover every scope and
        book, else take nothing (None). Taken: True if a lease fell under half of what it may
        hold with no top-up in flight (time to ask for more, before a request has to wait)."""
        need = tokens if tokens > 1 else 1
        for lease in c.req:
            if lease.requests < 1:
                return None
        for lease in c.tok:
            if lease.tokens < need:
                return None
        for lease in c.par:
            if lease.slots <= lease.slots_used:
                return None
        need = worst if worst > 1 else 1
        for book in c.books:
            if book.micro < need:
                return None
        low = False
        for lease in c.req:
            lease.requests -= 1
            if lease.requests * 2 < lease.hold_requests and not lease.asked_requests:
                low = True
        for lease in c.tok:
            lease.tokens -= tokens
            if lease.tokens * 2 < lease.hold_tokens and not lease.asked_tokens:
                low = True
        for lease in c.par:
            lease.slots_used += 1
            if (
                lease.slots < lease.hold_slots
                and (lease.slots - lease.slots_used) * 2 < lease.hold_slots
                and not lease.slots_busy
            ):
                low = True
        for lease in c.rate:
            lease.used_at = now
        for book in c.books:
            book.micro -= worst
            book.used_at = now
            if book.micro * 2 < book.hold and not book.asked:
                low = True
        return low

    def ask(
        self,
        scopes: Sequence[Scope],
        tokens: int,
        named: Sequence[tuple[BudgetScope, str]],
        worst: int,
    ) -> tuple[list[RateAsk], list[int]]:
        """What a script call for these scopes and books asks for (up to what each may hold,
        counting what calls in flight asked already); `granted` settles it."""
        asks = []
        for s in scopes:
            lease = self._lease(s)
            lease.hold_requests = hold(s.rpm, 1)
            lease.hold_tokens = hold(s.tpm, tokens)
            lease.hold_slots = hold(s.max_parallel, 1)
            r = max(0, lease.hold_requests - lease.requests - lease.asked_requests)
            t = max(0, lease.hold_tokens - lease.tokens - lease.asked_tokens)
            p = 0
            if not lease.slots_busy:
                p = max(0, lease.hold_slots - lease.slots)
                lease.slots_busy = p > 0
            lease.asked_requests += r
            lease.asked_tokens += t
            asks.append(RateAsk(r, t, p, lease.slots))
        books = []
        for bs, b in named:
            book = self._book(b, bs.limit_micro)
            book.hold = hold(bs.limit_micro, worst)
            m = max(0, book.hold - book.micro - book.asked)
            book.asked += m
            books.append(m)
        return asks, books

    def granted(
        self,
        scopes: Sequence[Scope],
        named: Sequence[tuple[BudgetScope, str]],
        asks: tuple[list[RateAsk], list[int]],
        reply: Sequence[tuple[float, float, int, int, int]] | None,
        books: Sequence[int] | None,
        now: float,
    ) -> None:
        """Apply what the script granted (per scope: levels left, requests, tokens, slots;
        per book: micro-dollars), or, with None, that the call failed or refused."""
        rate_asks, book_asks = asks
        for i, (s, a) in enumerate(zip(scopes, rate_asks, strict=True)):
            lease = self._lease(s)
            lease.asked_requests -= a.requests
            lease.asked_tokens -= a.tokens
            if a.slots:
                lease.slots_busy = False
            if reply is None:
                continue
            rl, tl, gr, gt, gp = reply[i]
            lease.requests += gr
            lease.tokens += gt
            lease.slots += gp
            lease.level_requests, lease.level_tokens, lease.seen_at = rl, tl, now
            if gr or gt or gp:  # a lease only asked for, never spent here, still goes back
                lease.used_at = now
        for j, ((bs, b), m) in enumerate(zip(named, book_asks, strict=True)):
            book = self._book(b, bs.limit_micro)
            book.asked -= m
            if books is not None and books[j]:
                book.micro += books[j]
                book.used_at = now

    def headers(self, scope: Scope, now: float) -> dict[str, str]:
        """Rate-limit headers from the local view: the level Redis last reported, refilled
        since, plus what this replica still holds (approximate: other replicas' takes since
        are unseen), within [0, limit]."""
        lease = self.rate.get(scope.name) or RateLease(scope)
        elapsed = now - lease.seen_at
        r = t = 0.0
        if scope.rpm:
            rpm = scope.rpm
            r = min(rpm, lease.level_requests + elapsed * rpm / WINDOW_S) + lease.requests
            r = min(max(r, 0.0), rpm)
        if scope.tpm:
            tpm = scope.tpm
            t = min(tpm, lease.level_tokens + elapsed * tpm / WINDOW_S) + lease.tokens
            t = min(max(t, 0.0), tpm)
        return rate_headers(
            scope,
            r,
            t,
            (scope.rpm - r) * WINDOW_S / scope.rpm if scope.rpm else 0,
            (scope.tpm - t) * WINDOW_S / scope.tpm if scope.tpm else 0,
            resets=False,  # an answered request's headers (a 429 carries the resets)
        )

    def settle(
        self,
        scopes: Sequence[Scope],
        estimated: int,
        actual: int,
        request_id: str,
        leased_slot: bool,
        reservation: Reservation | None,
        cost_micro: int,
    ) -> tuple[bool, list[int]]:
        """Settle a request admitted through Redis or leases: the token correction and the
        budget's unused reservation go to the lease (up to what it may hold; the rest, a
        token debt and the real spend, are queued for Redis), the slot back to the lease
        (or, taken in Redis, queued to be freed). Returns, per book, the spend queued before
        this request's (for its crossing once the push is answered), and whether anything was
        queued."""
        delta = estimated - actual
        queued_any = False
        for s in scopes:
            lease = self._lease(s)
            queued = False
            if s.tpm is not None and delta:
                lease.tokens += delta
                excess = lease.tokens - lease.hold_tokens
                if lease.tokens < 0 or excess > 0:
                    give = lease.tokens if lease.tokens < 0 else excess
                    lease.push_tokens += give
                    lease.tokens -= give
                    queued = True
            if s.max_parallel is not None:
                if leased_slot:
                    lease.slots_used = max(0, lease.slots_used - 1)
                else:
                    lease.push_ids.append(request_id)
                    queued = True
            if queued:
                self._dirty_rate.add(s.name)
                queued_any = True
        offsets = []
        if reservation is not None:
            worst = reservation.worst_micro
            for bs, b in reservation.scopes:
                book = self._book(b, bs.limit_micro)
                offsets.append(book.push_spent)
                book.push_spent += cost_micro
                # Redis holds (our requests' worst cases + our lease): it loses this cost
                # to `spent`, and the lease keeps worst - cost, within [0, hold].
                book.micro += worst - cost_micro
                give = cost_micro
                if book.micro < 0:
                    give += book.micro
                    book.micro = 0
                excess = book.micro - book.hold
                if excess > 0:
                    give += excess
                    book.micro -= excess
                book.push_reserved -= give
                self._dirty_books.add(b)
                queued_any = True
        return queued_any, offsets

    def settle_covered(
        self,
        c: Cover,
        delta: int,
        reservation: Reservation | None,
        cost_micro: int,
        offsets: list[int] | None,
    ) -> bool:
        """`settle` of a request admitted from the leases of `c` (current, the slot leased,
        `reservation` None or of `c.named`), with no lookups; `offsets` (if wanted) gets each
        book's queued spend before this request's. True if anything was queued."""
        queued = False
        if delta:
            for lease in c.tok:
                t = lease.tokens + delta
                if t < 0:
                    give = t
                elif t > lease.hold_tokens:
                    give = t - lease.hold_tokens
                else:
                    lease.tokens = t
                    continue
                lease.push_tokens += give
                lease.tokens = t - give
                self._dirty_rate.add(lease.scope.name)
                queued = True
        for lease in c.par:
            if lease.slots_used > 0:
                lease.slots_used -= 1
        if reservation is not None:
            worst = reservation.worst_micro
            dirty = self._dirty_books
            for b, book in c.book_names:
                if offsets is not None:
                    offsets.append(book.push_spent)
                book.push_spent += cost_micro
                # as in `settle`: the lease keeps worst - cost, within [0, hold]
                micro = book.micro + worst - cost_micro
                give = cost_micro
                if micro < 0:
                    give += micro
                    micro = 0
                elif micro > book.hold:
                    give += micro - book.hold
                    micro = book.hold
                book.micro = micro
                book.push_reserved -= give
                dirty.add(b)
                queued = True
        return queued

    def release(self, idle_before: float, refresh_before: float, now: float) -> bool:
        """Give back what was not used since `idle_before` (all of it: +inf), keep slots
        refreshed since `refresh_before` alive, and forget empty idle leases. True if
        anything is now queued for Redis."""
        for name, lease in list(self.rate.items()):
            idle = lease.used_at < idle_before
            if idle:
                self._give_back(lease)
            if lease.slots and lease.refreshed_at < refresh_before:
                lease.push_refresh = True
                lease.refreshed_at = now
                self._dirty_rate.add(name)
            if idle and name not in self._dirty_rate and self._empty(lease):
                del self.rate[name]
                self.gen += 1
        for b, book in list(self.books.items()):
            if book.used_at < idle_before and book.micro:
                self._give_back_book(b, book)
            elif book.used_at < idle_before and not book.asked and b not in self._dirty_books:
                del self.books[b]
                self.gen += 1
        return self.dirty()

    def _give_back(self, lease: RateLease) -> None:
        """Queue for Redis what a rate lease holds and no request uses."""
        if lease.requests or lease.tokens:
            lease.push_requests += lease.requests
            lease.push_tokens += lease.tokens
            lease.requests = lease.tokens = 0
            self._dirty_rate.add(lease.scope.name)
        free = lease.slots - lease.slots_used
        if free > 0 and not lease.slots_busy:
            lease.push_slots_from, lease.push_slots_to = lease.slots - free, lease.slots
            lease.slots -= free
            lease.slots_busy = True
            self._dirty_rate.add(lease.scope.name)

    def _give_back_book(self, b: str, book: BookLease) -> None:
        book.push_reserved -= book.micro
        book.micro = 0
        self._dirty_books.add(b)

    def _lease(self, s: Scope) -> RateLease:
        """The lease of `s`; if its limits changed, what was leased under the old ones goes
        back (it may be more than the new limits allow)."""
        lease = self.rate.get(s.name)
        if lease is None:
            lease = self.rate[s.name] = RateLease(s)
        elif lease.scope is not s:
            if lease.scope != s:
                lease.scope = s
                self._give_back(lease)
                self.gen += 1
            lease.scope = s
        return lease

    def _book(self, b: str, limit: int) -> BookLease:
        """The lease of book `b`; if its limit changed, what was leased goes back."""
        book = self.books.get(b)
        if book is None:
            book = self.books[b] = BookLease(limit)
        elif book.limit != limit:
            book.limit = limit
            self._give_back_book(b, book)
            self.gen += 1
        return book

    @staticmethod
    def _empty(lease: RateLease) -> bool:
        return not (
            lease.requests or lease.tokens or lease.slots or lease.slots_busy
            or lease.asked_requests or lease.asked_tokens
        )  # fmt: skip

    def dirty(self) -> bool:
        return bool(self._dirty_rate or self._dirty_books)

    def held(self) -> bool:
        return bool(self.rate or self.books)

    def drain(self) -> tuple[list[RatePush], list[BookPush]]:
        """Everything queued for Redis, now owed by the caller's push call (`pushed` after)."""
        rate = []
        for name in self._dirty_rate:
            lease = self.rate[name]
            rate.append(
                RatePush(
                    lease.scope,
                    lease.push_requests,
                    lease.push_tokens,
                    lease.push_slots_from,
                    lease.push_slots_to,
                    lease.slots if lease.push_refresh else 0,
                    lease.push_ids,
                )
            )
            lease.push_requests = lease.push_tokens = 0
            lease.push_slots_from = lease.push_slots_to = 0
            lease.push_refresh = False
            lease.push_ids = []
        books = []
        for b in self._dirty_books:
            book = self.books[b]
            books.append(BookPush(b, book.push_spent, book.push_reserved))
            book.push_spent = book.push_reserved = 0
        self._dirty_rate.clear()
        self._dirty_books.clear()
        return rate, books

    def pushed(self, rate: Sequence[RatePush]) -> None:
        """A push call returned (or failed): slot members it removed are settled."""
        for p in rate:
            if p.slots_to > p.slots_from and (lease := self.rate.get(p.scope.name)):
                lease.slots_busy = False

    def forget_slot(self, scopes: Sequence[Scope]) -> None:
        """A leased slot whose request never settled (see `RedisAdmission.prune`)."""
        for s in scopes:
            lease = self.rate.get(s.name)
            if lease is not None and s.max_parallel is not None:
                lease.slots_used = max(0, lease.slots_used - 1)

    def prune(self, oldest: str) -> None:
        """Forget books of windows that started before `oldest` (names end in their start)."""
        for b in [b for b in self.books if b.rsplit(":", 1)[-1] < oldest]:
            del self.books[b]
            self._dirty_books.discard(b)
            self.gen += 1
