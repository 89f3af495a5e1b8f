"""`Cover`: the leases one key's requests need, found once (see leases.py), and the values
covers are kept by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from slipstream.tenancy.admission import BudgetScope, Scope, rate_headers
from slipstream.tenancy.shared.records import BookLease, RateLease


def cover_key(
    scopes: Sequence[Scope], budgets: Sequence[BudgetScope] | None
) -> tuple[Scope | BudgetScope, ...]:
    """What a request's cover is kept by: its rate and budget scopes, frozen values (names
    and limits), so a refresh that changes a limit finds another cover. About 1 µs for a key,
    a team and a model with two budgets (hashing five small dataclasses)."""
    return tuple(scopes) if not budgets else (*scopes, *budgets)


class Cover:
    """The leases that the requests of one list of rate scopes and one list of budget books
    need (`Leases.cover`), found once: a covered request is then admitted and settled with
    no lookups. Current while the leases' `gen` is unchanged (and for the UTC day of the
    book names in `named`)."""

    __slots__ = (
        "book_names", "books", "gen", "head", "named", "par", "rate", "req", "scopes", "shown",
        "tok",
    )  # fmt: skip

    def __init__(
        self,
        scopes: Sequence[Scope],
        named: Sequence[tuple[BudgetScope, str]],
        gen: int,
        rate: list[RateLease],
        books: list[tuple[str, BookLease]],
    ) -> None:
        self.scopes, self.named, self.gen = scopes, named, gen
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
