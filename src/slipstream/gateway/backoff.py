"""Exponential backoff with full jitter (AWS architecture blog): delay ~ U(0, min(cap, base·2ⁿ))."""

from __future__ import annotations

import random

from slipstream.config.schema import RetriesConfig


def backoff_delay(config: RetriesConfig, retry: int, rng: random.Random) -> float:
    """The wait before retry number `retry` (0-based) of a deployment that already failed."""
    ceiling = min(config.backoff_max_s, config.backoff_base_s * (2**retry))
    return rng.uniform(0.0, ceiling) if config.jitter else ceiling
