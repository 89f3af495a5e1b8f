"""Leases: shared rate-limit and budget capacity that this replica took from Redis in advance,
so that most requests are admitted without a round trip.

A lease is taken atomically by the admission script (admission.py) from the shared
bucket, slot set or budget book, exactly like a request's own take, so spending it here can
never admit more than the shared limit allows. A request is admitted from leases only when
every one of its scopes and books is covered; otherwise the script decides (all or nothing,
as without leases) and tops the leases up in the same call.

Sizing (records.py) keeps behaviour near a limit exact and stranded capacity small:
capacity stranded in other replicas' unused leases is at most `hold` per replica, and only
until they use it or give it back after `IDLE_S`.

This module keeps the local books and what must still reach Redis (`push_*`: settlements,
given-back capacity); it does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from slipstream.tenancy.admission import BudgetScope, Reservation, Scope, rate_headers
from slipstream.tenancy.shared.cover import Cover
from slipstream.tenancy.shared.records import (
    BookLease,
    BookPush,
    RateAsk,
    RateLease,
    RatePush,
    hold,
)
from slipstream.tenancy.shared.replies import Granted


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
        self, scopes: Sequence[Scope], named: Sequence[tuple[BudgetScope, str]]
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
        return Cover(scopes, named, self.gen, rate, books)

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
        reply: Granted | None,
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
            g = reply.rates[i]
            lease.requests += g.requests
            lease.tokens += g.tokens
            lease.slots += g.slots
            lease.level_requests, lease.level_tokens = g.requests_left, g.tokens_left
            lease.seen_at = now
            if g.requests or g.tokens or g.slots:  # a lease only asked for, never spent here
                lease.used_at = now
        for j, ((bs, b), m) in enumerate(zip(named, book_asks, strict=True)):
            book = self._book(b, bs.limit_micro)
            book.asked -= m
            if reply is not None and (micro := reply.books[j].micro):
                book.micro += micro
                book.used_at = now

    def headers(self, scope: Scope, now: float) -> dict[str, str]:
        """Rate-limit headers from the local view (`RateLease.levels`) for an answered
        request (a 429 carries the resets)."""
        r, t = (self.rate.get(scope.name) or RateLease(scope)).levels(now)
        return rate_headers(scope, r, t, resets=False)

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
                queued = lease.correct_tokens(delta)
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
                offsets.append(self._book(b, bs.limit_micro).settle(worst, cost_micro))
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
                if lease.correct_tokens(delta):
                    self._dirty_rate.add(lease.scope.name)
                    queued = True
        for lease in c.par:
            if lease.slots_used > 0:
                lease.slots_used -= 1
        if reservation is not None:
            worst = reservation.worst_micro
            dirty = self._dirty_books
            for b, book in c.book_names:
                before = book.settle(worst, cost_micro)
                if offsets is not None:
                    offsets.append(before)
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
