"""Least outstanding requests: the deployment with the fewest requests in flight.

Ties (common at low load) are broken at random so one deployment is not always first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from slipstream.gateway.deployment import Deployment


class LeastOutstandingRouter:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[Deployment], body: dict[str, Any]) -> Deployment:
        low = min(d.outstanding for d in candidates)
        best = [d for d in candidates if d.outstanding == low]
        return best[0] if len(best) == 1 else best[self._rng.randrange(len(best))]
