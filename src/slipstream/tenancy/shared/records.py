"""The records of leases (see leases.py): what this replica holds of one rate scope or one
budget book, what a script call asks for, and what a push owes Redis.

Sizing keeps behaviour near a limit exact and stranded capacity small: a replica holds at
most 1/64 of a limit and at most 64 requests' worth (`hold`), nothing at all for limits
under 64 requests' worth of it, and the script grants nothing once less than a quarter of
the limit is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slipstream.tenancy.admission import WINDOW_S, Scope

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

    def levels(self, now: float) -> tuple[float, float]:
        """Requests and tokens left as this replica sees them: the level Redis last reported,
        refilled since, plus what it still holds, within [0, limit] (approximate: other
        replicas' takes since are unseen)."""
        scope = self.scope
        elapsed = now - self.seen_at
        r = t = 0.0
        if rpm := scope.rpm:
            r = self.level_requests + elapsed * rpm / WINDOW_S
            r = (r if r < rpm else rpm) + self.requests
            r = 0.0 if r < 0.0 else (r if r < rpm else rpm)
        if tpm := scope.tpm:
            t = self.level_tokens + elapsed * tpm / WINDOW_S
            t = (t if t < tpm else tpm) + self.tokens
            t = 0.0 if t < 0.0 else (t if t < tpm else tpm)
        return r, t

    def correct_tokens(self, delta: int) -> bool:
        """Give the lease a request's token correction (estimate - usage), within
        [0, hold_tokens]; what does not fit is queued for Redis (True: something was)."""
        t = self.tokens + delta
        if t < 0:
            give = t
        elif t > self.hold_tokens:
            give = t - self.hold_tokens
        else:
            self.tokens = t
            return False
        self.push_tokens += give
        self.tokens = t - give
        return True


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

    def settle(self, worst: int, cost: int) -> int:
        """Settle one request that reserved `worst` and cost `cost`; returns the spend queued
        before it (for its budget crossing). Redis holds (our requests' worst cases + this
        lease): it loses `cost` to `spent`, and the lease keeps worst - cost, within
        [0, hold]; the rest of the reservation goes back."""
        before = self.push_spent
        self.push_spent += cost
        micro = self.micro + worst - cost
        give = cost
        if micro < 0:
            give += micro
            micro = 0
        elif micro > self.hold:
            give += micro - self.hold
            micro = self.hold
        self.micro = micro
        self.push_reserved -= give
        return before


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
