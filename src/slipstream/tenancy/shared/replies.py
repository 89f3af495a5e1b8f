"""The answers of the admission scripts (scripts.py), each read once, by the parse function
beside its record, into a typed value: nothing downstream unpacks a reply by position.

Values come as Redis sends them through either client: integers as int, the Lua strings
(levels, waits) as bytes or str, both read with int()/float().
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class RateGrant:
    """One rate scope's part of an ADMIT that took: the shared levels left after it (-1: that
    bucket is not tracked), and the requests, tokens and slots leased to this replica."""

    requests_left: float
    tokens_left: float
    requests: int
    tokens: int
    slots: int


@dataclass(slots=True)
class BookGrant:
    """One budget book's part of an ADMIT that took: its spend, and the micro-dollars leased."""

    spent_micro: int
    micro: int


@dataclass(slots=True)
class Granted:
    """ADMIT took everything (the request, if it asked to be admitted, and the leases)."""

    rates: list[RateGrant]  # per rate scope, in the order of the call
    books: list[BookGrant]  # per budget book, in the order of the call


REFUSED_BY = {1: "requests per minute", 2: "tokens per minute", 3: "concurrent requests"}
BUDGET = 4


@dataclass(slots=True)
class Refused:
    """ADMIT refused the request and took nothing: rate scope `index` had no room for
    `limit` (one of REFUSED_BY's), or, `by_budget`, budget book `index` was spent."""

    index: int
    by_budget: bool
    limit: str
    wait_s: float  # until the refusing bucket has room (rate limits)
    requests_left: float  # of the refusing scope's buckets
    tokens_left: float
    spent_micro: int  # of the refusing book (budgets)


def parse_admit(raw: Sequence[Any], n_rates: int) -> Granted | Refused:
    """ADMIT's reply, for a call with `n_rates` rate scopes: {1, 0, 0, '0'} then per rate
    scope {requests left, tokens left, requests, tokens, slots granted} and per book {spent,
    micro-dollars granted}; or {0, index, why, wait, requests left, tokens left, spent}."""
    if int(raw[0]):
        end = 4 + n_rates * 5
        rates = [
            RateGrant(float(raw[i]), float(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]),
                      int(raw[i + 4]))
            for i in range(4, end, 5)
        ]  # fmt: skip
        books = [BookGrant(int(raw[j]), int(raw[j + 1])) for j in range(end, len(raw), 2)]
        return Granted(rates, books)
    _, index, why, wait, rl, tl, spent = raw
    why = int(why)
    return Refused(
        int(index),
        why == BUDGET,
        "budget" if why == BUDGET else REFUSED_BY[why],
        float(wait),
        float(rl),
        float(tl),
        int(spent),
    )


@dataclass(slots=True)
class PushReply:
    """PUSH's reply: each budget book's spend after the push, in the order of the call."""

    spent_micro: list[int]


def parse_push(raw: Sequence[Any]) -> PushReply:
    return PushReply([int(v) for v in raw])
