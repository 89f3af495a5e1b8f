"""Lowest latency: the smallest EWMA of time to first token.

A deployment with no sample yet is tried first, so every deployment gets measured.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from slipstream.gateway.deployment import Deployment


class LowestLatencyRouter:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[Deployment], body: dict[str, Any]) -> Deployment:
        unmeasured = [d for d in candidates if d.ewma_ttft_s is None]
        if unmeasured:
            return unmeasured[self._rng.randrange(len(unmeasured))]
        return min(candidates, key=lambda d: d.ewma_ttft_s or 0.0)
