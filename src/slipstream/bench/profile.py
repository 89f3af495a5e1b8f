"""Time-varying load: ramp and spike as a piecewise-linear rate ``r(t)``.

Arrivals are drawn in *operational time* first (a unit-rate constant, Poisson or gamma
process: arrival ``k`` at ``u_k``) and then mapped to wall time through the inverse of the
cumulative rate ``Λ(t) = ∫₀ᵗ r(s) ds``, so ``--pattern`` keeps its meaning (poisson stays
Poisson, with a changing rate) and ``rate × time`` arrivals happen in every stretch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Segment = tuple[float, float, float, float]  # (t_start, t_end, rate_start, rate_end)


@dataclass(frozen=True)
class RateProfile:
    segments: tuple[Segment, ...]

    @classmethod
    def ramp(cls, start_rate: float, end_rate: float, duration: float) -> RateProfile:
        """Linear from ``start_rate`` to ``end_rate`` over ``duration`` seconds."""
        return cls(((0.0, duration, start_rate, end_rate),))

    @classmethod
    def spike(
        cls, base: float, peak: float, start: float, length: float, duration: float
    ) -> RateProfile:
        """``base`` req/s, except ``peak`` req/s during ``[start, start + length)``."""
        end = min(start + length, duration)
        segs = [(0.0, start, base, base), (start, end, peak, peak), (end, duration, base, base)]
        return cls(tuple(s for s in segs if s[1] > s[0]))

    @property
    def duration(self) -> float:
        return self.segments[-1][1]

    def rate_at(self, t: float) -> float:
        for t0, t1, r0, r1 in self.segments:
            if t0 <= t < t1:
                return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        return 0.0

    def expected_arrivals(self) -> float:
        return sum((t1 - t0) * (r0 + r1) / 2 for t0, t1, r0, r1 in self.segments)

    def time_of(self, u: float) -> float | None:
        """Wall time at which ``Λ(t) = u``; None when ``u`` lies beyond the profile's end."""
        acc = 0.0
        for t0, t1, r0, r1 in self.segments:
            span = t1 - t0
            area = span * (r0 + r1) / 2
            if u <= acc + area and area > 0:
                need = u - acc
                slope = (r1 - r0) / span
                if abs(slope) < 1e-12:
                    return t0 + need / r0
                # r0·τ + slope·τ²/2 = need  →  the positive root
                return t0 + (-r0 + math.sqrt(max(0.0, r0 * r0 + 2 * slope * need))) / slope
            acc += area
        return None
