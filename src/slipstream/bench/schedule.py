"""When requests are due: closed loop (fixed concurrency) or open loop (arrival process).

In open loop every request has a *scheduled* time fixed in advance; latency is measured from
it, so a slow server (or a slow client) cannot hide queueing delay (coordinated omission).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from slipstream.bench.profile import RateProfile
from slipstream.bench.trace import load_trace

PATTERNS = ("constant", "poisson", "gamma")


@dataclass(frozen=True)
class ScheduleConfig:
    """``concurrency`` alone = closed loop; ``rate`` = open loop (optionally capped by concurrency).

    ``ramp_to`` (rate goes linearly from ``rate`` to it over the run's duration), ``spike``
    (``(peak_rate, start_s, length_s)`` on top of ``rate``) and ``trace`` (arrival offsets
    from a recorded trace, see trace.py) are open-loop variants.
    """

    concurrency: int | None = None
    rate: float | None = None
    pattern: str = "poisson"
    burstiness: float = 1.0  # gamma shape: < 1 burstier than Poisson, > 1 smoother
    seed: int = 0
    ramp_to: float | None = None
    spike: tuple[float, float, float] | None = None
    trace: str | None = None
    trace_time_unit: str = "s"

    def __post_init__(self) -> None:
        if self.trace is not None and (self.rate is not None or self.ramp_to or self.spike):
            raise ValueError("--trace sets the arrival times: drop --rate, --ramp-to, --spike")
        if (self.ramp_to is not None or self.spike is not None) and self.rate is None:
            raise ValueError("--ramp-to and --spike need a starting/base --rate")
        if self.ramp_to is not None and self.spike is not None:
            raise ValueError("give --ramp-to or --spike, not both")
        if self.ramp_to is not None and not self.ramp_to >= 0:
            raise ValueError(f"--ramp-to must be >= 0 requests/s, got {self.ramp_to:g}")
        if self.spike is not None and not (
            self.spike[0] > 0 and self.spike[1] >= 0 and self.spike[2] > 0
        ):
            raise ValueError("--spike PEAK:START:LENGTH needs PEAK > 0, START >= 0, LENGTH > 0")
        if self.pattern not in PATTERNS:
            raise ValueError(
                f"unknown pattern {self.pattern!r}; expected one of {', '.join(PATTERNS)}"
            )
        if self.rate is None and self.concurrency is None and self.trace is None:
            raise ValueError("give --concurrency N or --rate R")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"--rate must be > 0 requests/s, got {self.rate:g}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {self.concurrency}")
        if not self.burstiness > 0:
            raise ValueError(f"--burstiness must be > 0, got {self.burstiness:g}")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None or self.trace is not None

    def profile(self, duration: float | None) -> RateProfile | None:
        """The time-varying rate of --ramp-to / --spike (None for a steady rate)."""
        if self.ramp_to is None and self.spike is None:
            return None
        if duration is None:
            raise ValueError("--ramp-to and --spike need --duration (the profile's length)")
        assert self.rate is not None
        if self.ramp_to is not None:
            return RateProfile.ramp(self.rate, self.ramp_to, duration)
        assert self.spike is not None
        return RateProfile.spike(self.rate, *self.spike, duration)


def parse_spike(text: str) -> tuple[float, float, float]:
    """``PEAK:START:LENGTH`` (req/s, s, s), e.g. ``50:10:5``."""
    try:
        peak, start, length = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(
            f"bad --spike {text!r}: expected PEAK:START:LENGTH, e.g. 50:10:5"
        ) from None
    return peak, start, length


def unit_arrivals(config: ScheduleConfig) -> Iterator[float]:
    """Arrivals of a rate-1 process of the configured pattern (operational time)."""
    rng = random.Random(f"{config.seed}:arrivals")
    u, i = 0.0, 0
    while True:
        yield u
        i += 1
        if config.pattern == "constant":
            u = float(i)
        elif config.pattern == "poisson":
            u += rng.expovariate(1.0)
        else:
            u += rng.gammavariate(config.burstiness, 1.0 / config.burstiness)


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
    if config.trace is not None:
        times: Iterator[float] = iter(
            [e.offset for e in load_trace(config.trace, config.trace_time_unit)]
        )
    elif (prof := config.profile(duration)) is not None:
        times = _until_none(prof, unit_arrivals(config))
    else:
        times = arrival_offsets(config)
    out: list[float] = []
    for t in times:
        if (requests is not None and len(out) >= requests) or (
            duration is not None and t >= duration
        ):
            break
        out.append(t)
    return out


def _until_none(prof: RateProfile, units: Iterator[float]) -> Iterator[float]:
    for u in units:
        t = prof.time_of(u)
        if t is None:
            return
        yield t
