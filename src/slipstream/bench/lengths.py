"""Token-length distributions for synthetic workloads (fixed, uniform, normal, lognormal)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

KINDS = ("fixed", "uniform", "normal", "lognormal")


@dataclass(frozen=True)
class LengthDist:
    """A distribution of token counts; samples are integers clamped to ``[minimum, maximum]``.

    ``a``/``b`` mean ``mean``/``stddev`` for normal and lognormal, ``low``/``high`` for
    uniform, and ``a`` is the value for fixed.
    """

    kind: str
    a: float
    b: float = 0.0
    minimum: int = 1
    maximum: int = 1_000_000

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown distribution {self.kind!r}; expected one of {', '.join(KINDS)}"
            )
        if self.a <= 0 or self.b < 0:
            raise ValueError(
                f"{self.kind} distribution needs positive parameters, got {self.a}, {self.b}"
            )
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform needs MIN <= MAX, got {self.a:g},{self.b:g}")

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def sample(self, rng: random.Random) -> int:
        if self.kind == "fixed" or (self.kind in ("normal", "lognormal") and self.b == 0):
            value = self.a
        elif self.kind == "uniform":
            value = rng.uniform(self.a, self.b)
        elif self.kind == "normal":
            value = rng.gauss(self.a, self.b)
        else:  # lognormal with the requested mean and stddev of the *result*
            sigma2 = math.log1p((self.b / self.a) ** 2)
            mu = math.log(self.a) - sigma2 / 2
            value = rng.lognormvariate(mu, math.sqrt(sigma2))
        return max(self.minimum, min(self.maximum, round(value)))

    @classmethod
    def parse(cls, text: str) -> LengthDist:
        """Parse ``MEAN``, ``MEAN,STDDEV`` (normal), or ``KIND:A[,B]`` (e.g. ``uniform:64,256``)."""
        kind, _, params = text.strip().rpartition(":")
        try:
            nums = [float(p) for p in params.split(",") if p.strip()]
        except ValueError:
            raise ValueError(
                f"bad length spec {text!r}: expected MEAN[,STDDEV] or KIND:A[,B]"
            ) from None
        if not nums or len(nums) > 2:
            raise ValueError(f"bad length spec {text!r}: expected one or two numbers")
        if not kind:
            kind = "normal" if len(nums) == 2 else "fixed"
        if kind == "uniform" and len(nums) != 2:
            raise ValueError(f"bad length spec {text!r}: uniform needs MIN,MAX")
        return cls(kind, nums[0], nums[1] if len(nums) == 2 else 0.0)

    def describe(self) -> str:
        return f"{self.kind}:{self.a:g}" + (f",{self.b:g}" if self.kind != "fixed" else "")
