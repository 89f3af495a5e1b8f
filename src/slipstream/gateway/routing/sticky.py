"""Sticky sessions by consistent hashing with virtual nodes.

Each deployment owns `vnodes` points on a 64-bit ring; a session key maps to the first point
clockwise. Adding one deployment to N moves only ~1/(N+1) of the sessions, and when the owner
is unavailable the walk continues clockwise, so only that deployment's sessions move.
Virtual nodes are proportional to weight, so sessions split like weighted traffic; a
weight-0 backup owns no points and takes sessions only through the router when all else fails.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence

from slipstream.gateway.deployment import Deployment

VNODES = 160


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, names: Iterable[str] | Mapping[str, float], vnodes: int = VNODES) -> None:
        weights = dict(names) if isinstance(names, Mapping) else dict.fromkeys(names, 1.0)
        positive = [w for w in weights.values() if w > 0]
        mean = sum(positive) / len(positive) if positive else 1.0
        counts = {n: max(1, round(vnodes * w / mean)) if w > 0 else 0 for n, w in weights.items()}
        points = sorted((_hash(f"{n}#{i}"), n) for n, c in counts.items() for i in range(c))
        self._keys = [p for p, _ in points]
        self._owners = [n for _, n in points]

    def owner(self, key: str, allowed: Sequence[str] | None = None) -> str | None:
        """The owner of `key`: the first point clockwise whose deployment is in `allowed`."""
        allowed_set = set(allowed) if allowed is not None else None
        if not self._keys or allowed_set == set():
            return None
        n = len(self._keys)
        start = bisect.bisect(self._keys, _hash(key))
        for i in range(n):
            name = self._owners[(start + i) % n]
            if allowed_set is None or name in allowed_set:
                return name
        return None

    def pick(self, key: str, candidates: Sequence[Deployment]) -> Deployment | None:
        by_name = {d.name: d for d in candidates}
        name = self.owner(key, list(by_name))
        return by_name.get(name) if name is not None else None
