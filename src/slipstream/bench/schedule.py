"""When requests are due: closed loop (fixed concurrency) or open loop (arrival process).

In open loop every request has a *scheduled* time fixed in advance; latency is measured from
it, so a slow server (or a slow client) cannot hide queueing delay (coordinated omission).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

PATTERNS = ("constant", "poisson", "gamma")


@dataclass(frozen=True)
class ScheduleConfig:
    """``concurrency`` alone = closed loop; ``rate`` = open loop (optionally capped by concurrency)."""

    concurrency: int | None = None
    rate: float | None = None
    pattern: str = "poisson"
    burstiness: float = 1.0  # gamma shape: < 1 burstier than Poisson, > 1 smoother
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(
                f"unknown pattern {self.pattern!r}; expected one of {', '.join(PATTERNS)}"
            )
        if self.rate is None and self.concurrency is None:
            raise ValueError("give --concurrency N or --rate R")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"--rate must be > 0 requests/s, got {self.rate:g}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {self.concurrency}")
        if not self.burstiness > 0:
            raise ValueError(f"--burstiness must be > 0, got {self.burstiness:g}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


def arrival_offsets(config: ScheduleConfig) -> Iterator[float]:
    """Infinite stream of scheduled offsets (seconds from the run start), first one at 0."""
    assert config.rate is not None
    rng = random.Random(f"{config.seed}:arrivals")
    rate = config.rate
    t = 0.0
    i = 0
    while True:
        yield t
        i += 1
        if config.pattern == "constant":
            t = i / rate  # no accumulated rounding: exactly rate × duration arrivals
        elif config.pattern == "poisson":
            t += rng.expovariate(rate)
        else:
            shape = config.burstiness
            t += rng.gammavariate(shape, 1.0 / (rate * shape))


def planned_offsets(
    config: ScheduleConfig, requests: int | None, duration: float | None
) -> list[float]:
    """All scheduled offsets for an open-loop run that stops at a count and/or a duration."""
    if requests is None and duration is None:
        raise ValueError("give --requests N or --duration S")
    out: list[float] = []
    for t in arrival_offsets(config):
        if (requests is not None and len(out) >= requests) or (
            duration is not None and t >= duration
        ):
            break
        out.append(t)
    return out
