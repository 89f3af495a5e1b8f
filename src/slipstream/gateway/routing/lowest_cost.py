"""Lowest cost: the cheapest deployment for this request, from its configured prices.

The request's cost is estimated from what is known before the call: about four characters
per prompt token and `max_tokens` (or 256) output tokens.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from slipstream.gateway.deployment import Deployment

DEFAULT_OUTPUT_TOKENS = 256


def estimated_cost(d: Deployment, prompt_tokens: int, output_tokens: int) -> float:
    p = d.config.prices
    return (prompt_tokens * p.input_per_mtok + output_tokens * p.output_per_mtok) / 1e6


def estimate_tokens(body: dict[str, Any]) -> tuple[int, int]:
    chars = 0
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        chars += len(prompt)
    out = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_OUTPUT_TOKENS
    return chars // 4 + 1, int(out)


class LowestCostRouter:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def pick(self, candidates: Sequence[Deployment], body: dict[str, Any]) -> Deployment:
        prompt, output = estimate_tokens(body)
        costs = [estimated_cost(d, prompt, output) for d in candidates]
        low = min(costs)
        best = [d for d, c in zip(candidates, costs, strict=True) if c <= low * (1 + 1e-9)]
        return best[0] if len(best) == 1 else best[self._rng.randrange(len(best))]
