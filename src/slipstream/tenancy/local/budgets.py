"""One replica's budget books, in memory (see admission.py for the admission rule).

`seed` raises a book's spend to what the ledger says; `prune` forgets books of windows that
ended. `RedisAdmission` (shared/) keeps the same books in Redis, shared across replicas, and
falls back to these while Redis is unreachable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slipstream.store.records import utcnow
from slipstream.tenancy.admission import BudgetScope, Crossing, Refusal, Reservation
from slipstream.tenancy.books import BucketNames, bucket_name, window_end


@dataclass
class MemoryBudgets:
    """One replica's book. `seed` raises spend to what the ledger says (never lowers it)."""

    now: Callable[[], dt.datetime] = utcnow
    spent: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    names: BucketNames = field(default_factory=BucketNames, repr=False)
    report_crossings: bool = True  # False: no budget alerts are configured to read them

    def take(self, scopes: Sequence[BudgetScope], worst: int) -> Reservation | Refusal:
        """Reserve `worst` in every book, or refuse (spent + reserved at a limit), taking
        nothing."""
        now = self.now()
        named = self.names.of(scopes, now)
        for s, b in named:
            spent = self.spent.get(b, 0)
            if spent + self.reserved.get(b, 0) >= s.limit_micro:
                return Refusal(s, spent, window_end(s.window, now))
        for _, b in named:
            self.reserved[b] = self.reserved.get(b, 0) + worst
        return Reservation(named, worst)

    def close(self, r: Reservation, actual: int) -> list[Crossing]:
        """Replace a reservation by the real cost (once; again: nothing)."""
        if r.settled:
            return []
        r.settled = True
        out = []
        reserved, spent, report = self.reserved, self.spent, self.report_crossings
        for s, b in r.scopes:
            reserved[b] = max(0, reserved.get(b, 0) - r.worst_micro)
            before = spent.get(b, 0)
            spent[b] = before + actual
            if report:
                out.append(Crossing(s, b, before, before + actual))
        return out

    def seed(self, scope: BudgetScope, spent_micro: int) -> None:
        b = bucket_name(scope, self.now())
        self.spent[b] = max(self.spent.get(b, 0), spent_micro)

    def prune(self) -> None:
        """Forget books of windows that ended (names end in their start day)."""
        oldest = (self.now() - dt.timedelta(days=32)).date().isoformat()
        for book in (self.spent, self.reserved):
            for b in [b for b in book if b.rsplit(":", 1)[-1] < oldest]:
                del book[b]
