"""Prices per deployment and exact request cost in integer micro-dollars.

A price in USD per million tokens is numerically micro-dollars per token, so a request costs
`uncached_in * input + cached * cached_input + out * output` micro-dollars, computed in
Decimal and rounded once (half up). The same usage always costs the same, stream or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

from slipstream.config.schema import DeploymentConfig
from slipstream.providers.base import Usage

FREE_PROVIDERS = ("local",)


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens (= micro-dollars per token)."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None  # None: cached tokens cost the full input price
    source: str = "config"

    def cost_micro(self, usage: Usage) -> int:
        cached = min(max(usage.cached_tokens, 0), max(usage.prompt_tokens, 0))
        uncached = max(usage.prompt_tokens, 0) - cached
        cin = self.cached_input if self.cached_input is not None else self.input
        total = uncached * self.input + cached * cin + max(usage.completion_tokens, 0) * self.output
        return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def worst_case_micro(self, prompt_tokens: int, max_tokens: int) -> int:
        """An upper bound before the call: no cache hit, every allowed output token."""
        return self.cost_micro(Usage(prompt_tokens, max_tokens, 0))


def _dec(v: float | None) -> Decimal | None:
    return None if v is None else Decimal(str(v))


class PriceTable:
    """Config prices first, then the shipped dated defaults by upstream model name."""

    def __init__(self, defaults: dict[str, Price] | None = None, effective_date: str = "") -> None:
        if defaults is None:
            defaults, effective_date = load_defaults()
        self.defaults = defaults
        self.effective_date = effective_date

    def for_deployment(self, dc: DeploymentConfig) -> Price:
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
