"""Prices per deployment and exact request cost in integer micro-dollars.

A price in USD per million tokens is numerically micro-dollars per token, so a request costs
`uncached_in * input + cached * cached_input + out * output` micro-dollars, computed in
Decimal and rounded once (half up). The same usage always costs the same, stream or not.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

from slipstream.config.schema import DeploymentConfig, PricesConfig
from slipstream.providers.base import Usage

FREE_PROVIDERS = ("local",)
MAX_RESOLVED = 4096


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens (= micro-dollars per token)."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None  # None: cached tokens cost the full input price
    source: str = "config"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_exact", _exact_ratios(self))

    def cost_micro(self, usage: Usage) -> int:
        return self._cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)

    def worst_case_micro(self, prompt_tokens: int, max_tokens: int) -> int:
        """An upper bound before the call: no cache hit, every allowed output token."""
        return self._cost(prompt_tokens, 0, max_tokens)

    def _cost(self, prompt: int, cached: int, completion: int) -> int:
        if prompt < 0:
            prompt = 0
        cached = 0 if cached < 0 else (prompt if cached > prompt else cached)
        uncached = prompt - cached
        if completion < 0:
            completion = 0
        exact: tuple[int, int, int, int] | None = self.__dict__["_exact"]
        if exact is not None:  # the same number in integers (each request prices twice)
            n_in, n_cached, n_out, denominator = exact
            total = uncached * n_in + cached * n_cached + completion * n_out
            rounded = (2 * abs(total) + denominator) // (2 * denominator)  # half away from 0
            return rounded if total >= 0 else -rounded
        cin = self.cached_input if self.cached_input is not None else self.input
        total_d = uncached * self.input + cached * cin + completion * self.output
        return int(total_d.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _exact_ratios(p: Price) -> tuple[int, int, int, int] | None:
    """The three per-token prices as integer numerators over one common denominator, so a
    cost is exact integer arithmetic, equal to the Decimal sum rounded half up; None for
    values that are not finite numbers (then Decimal does it)."""
    try:
        cin = p.cached_input if p.cached_input is not None else p.input
        ratios = [d.as_integer_ratio() for d in (p.input, cin, p.output)]
    except (ValueError, OverflowError, AttributeError):
        return None
    denominator = math.lcm(*(q for _, q in ratios))
    n_in, n_cached, n_out = (n * (denominator // q) for n, q in ratios)
    return n_in, n_cached, n_out, denominator


def _dec(v: float | None) -> Decimal | None:
    return None if v is None else Decimal(str(v))


class PriceTable:
    """Config prices first, then the shipped dated defaults by upstream model name.

    Every request asks twice (its worst case, then its cost), so each price is resolved once
    and kept by what it is resolved from: the deployment's provider, upstream model and
    configured prices (frozen values; a reload with other prices makes another key).
    """

    def __init__(self, defaults: dict[str, Price] | None = None, effective_date: str = "") -> None:
        if defaults is None:
            defaults, effective_date = load_defaults()
        self.defaults = defaults
        self.effective_date = effective_date
        self._resolved: dict[tuple[str, str, PricesConfig], Price] = {}

    def for_deployment(self, dc: DeploymentConfig) -> Price:
        key = (dc.provider, dc.model, dc.prices)
        price = self._resolved.get(key)
        if price is None:
            if len(self._resolved) >= MAX_RESOLVED:  # reloads brought other prices: start over
                self._resolved.clear()
            price = self._resolved[key] = self._resolve(dc)
        return price

    def _resolve(self, dc: DeploymentConfig) -> Price:
        p = dc.prices
        if p.input_per_mtok or p.output_per_mtok or p.cached_input_per_mtok:
            return Price(
                Decimal(str(p.input_per_mtok)),
                Decimal(str(p.output_per_mtok)),
                _dec(p.cached_input_per_mtok),
                "config",
            )
        if dc.provider in FREE_PROVIDERS:
            return Price(source="local")
        return self.defaults.get(dc.model, Price(source="unknown"))


def unpriced(table: PriceTable, deployments: list[DeploymentConfig]) -> list[str]:
    """Remote deployments with no price anywhere: their spend would read $0, so say so."""
    return [
        f"{d.name} ({d.provider}/{d.model})"
        for d in deployments
        if table.for_deployment(d).source == "unknown"
    ]


def load_defaults() -> tuple[dict[str, Price], str]:
    text = resources.files("slipstream.tenancy").joinpath("default_prices.json").read_text()
    data = json.loads(text)
    table = {
        name: Price(
            Decimal(str(p["input"])),
            Decimal(str(p["output"])),
            _dec(p.get("cached_input")),
            f"default:{data['effective_date']}",
        )
        for name, p in data["models"].items()
    }
    return table, data["effective_date"]
