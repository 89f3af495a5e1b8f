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
    at midnight), kept by the scopes' values (frozen: name, limit, window)."""

    MAX = 4096

    def __init__(self) -> None:
        self._day_start = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._day_end = self._day_start
        self._cache: dict[tuple[BudgetScope, ...], list[tuple[BudgetScope, str]]] = {}

    def of(self, scopes: Sequence[BudgetScope], now: dt.datetime) -> list[tuple[BudgetScope, str]]:
        """(scope, book name) pairs; the returned list is shared: never change it."""
        if not self._day_start <= now < self._day_end:
            start = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
            self._day_start, self._day_end = start, start + dt.timedelta(days=1)
            self._cache.clear()
        key = tuple(scopes)
        named = self._cache.get(key)
        if named is None:
            if len(self._cache) >= self.MAX:  # refreshes brought other limits: start over
                self._cache.clear()
            named = self._cache[key] = [(s, bucket_name(s, now)) for s in scopes]
        return named
