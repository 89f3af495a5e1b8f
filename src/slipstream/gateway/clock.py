"""Time as a dependency: breakers, cooldowns and backoff read `Clock`, so tests can drive time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    now: Callable[[], float] = time.monotonic  # seconds, monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
