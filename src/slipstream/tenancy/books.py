"""Budget books by window: a book's name is its scope's name and the start day of the window
it counts (UTC), so a new window starts at zero without any reset job and old books can be
pruned by name. Both admissions (local/, shared/) name their books here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from slipstream.store.records import window_start
from slipstream.tenancy.admission import BudgetScope


def bucket_name(scope: BudgetScope, now: dt.datetime) -> str:
    return f"{scope.name}:{window_start(scope.window, now).isoformat()}"


def window_end(window: str | None, now: dt.datetime) -> dt.datetime:
    start = window_start(window, now)
    if window == "weekly":
        end = start + dt.timedelta(days=7)
    elif window == "monthly":
        end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    else:
        end = start + dt.timedelta(days=1)
    return dt.datetime.combine(end, dt.time(), dt.UTC)


class BucketNames:
    """`bucket_name` for lists of scopes, worked out once per UTC day (a window can only turn
    at midnight). Lists are kept by identity (the limits stage shares one list per key), with
    the list itself held so its id cannot be reused while cached."""

    MAX = 4096

    def __init__(self) -> None:
        self._day_start = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._day_end = self._day_start
        self._cache: dict[int, tuple[Sequence[BudgetScope], list[tuple[BudgetScope, str]]]] = {}

    def of(self, scopes: Sequence[BudgetScope], now: dt.datetime) -> list[tuple[BudgetScope, str]]:
        """(scope, book name) pairs; the returned list is shared: never change it."""
        if not self._day_start <= now < self._day_end:
            start = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
            self._day_start, self._day_end = start, start + dt.timedelta(days=1)
            self._cache.clear()
        hit = self._cache.get(id(scopes))
        if hit is not None and hit[0] is scopes:
            return hit[1]
        if len(self._cache) >= self.MAX:
            self._cache.clear()
        named = [(s, bucket_name(s, now)) for s in scopes]
        self._cache[id(scopes)] = (scopes, named)
        return named
