"""`Cover`: the leases one key's requests need, found once (see leases.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from slipstream.tenancy.admission import BudgetScope, Scope, rate_headers
from slipstream.tenancy.shared.records import BookLease, RateLease


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
        r, t = cast(RateLease, self.head).levels(now)
        ri, ti = int(r), int(t)
        shown = self.shown
        if shown[0] != ri or shown[1] != ti:
            shown = self.shown = (ri, ti, rate_headers(self.scopes[0], r, t, resets=False))
        return shown[2].copy()
