"""Weighted random choice: traffic splits in proportion to `weight`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from slipstream.gateway.deployment import Deployment


class WeightedRouter:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[Deployment], body: dict[str, Any]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        total = sum(d.weight for d in candidates)
        if total <= 0:  # only zero-weight backups are left: any of them
            return candidates[self._rng.randrange(len(candidates))]
        x = self._rng.random() * total
        for d in candidates:
            x -= d.weight
            if x < 0:
                return d
        return candidates[-1]
